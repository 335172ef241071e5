from django.db import models


class Task(models.Model):
    user_id = models.CharField(max_length=255, db_index=True)
    title = models.CharField(max_length=500)
    completed = models.BooleanField(default=False)

    def as_json(self):
        return {"id": self.id, "user_id": self.user_id, "title": self.title, "completed": self.completed}
