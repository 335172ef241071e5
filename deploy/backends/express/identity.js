// The identity boundary: Portcullis verified the caller's JWT and set exactly one
// X-User-Id. Without one, the request stops here with 401.
module.exports = function requireUser(req, res, next) {
  // Node joins repeated headers with ", ": a comma means more than one value.
  const userId = (req.get('X-User-Id') || '').trim();
  if (!userId || userId.includes(',')) {
    return res.status(401).json({ error: 'missing or ambiguous X-User-Id' });
  }
  req.userId = userId;
  next();
};
