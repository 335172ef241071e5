"""Turns bench/results.json into bench/RESULTS.md (tables and the issue's targets) and
bench/results.png (the chart). Also runnable alone to redraw from an existing JSON:

    python bench/report.py bench/results.json
"""

import json
import statistics
import sys
from pathlib import Path

MAIN = ["portcullis", "envoy", "nginx", "node", "fastapi"]
COLORS = {"portcullis": "#c0392b", "envoy": "#8e44ad", "nginx": "#27ae60", "node": "#2980b9", "fastapi": "#e67e22"}
LOAD_ORDER = [
    "public",
    "eddsa-repeat",
    "eddsa-distinct",
    "eddsa-limit-local",
    "eddsa-limit-redis",
    "eddsa-revoked-10k",
    "rs256-repeat",
    "rs256-distinct",
    "es256-repeat",
    "es256-distinct",
    "invalid",
    "conns-1k",
    "conns-10k",
]
TITLES = {
    "public": "No auth (public route), 50 connections",
    "eddsa-repeat": "EdDSA, one token repeated, 50 connections",
    "eddsa-distinct": "EdDSA, every token different, 50 connections",
    "eddsa-limit-local": "EdDSA repeated, per-user rate limit kept locally (never refuses), 50 connections",
    "eddsa-limit-redis": "EdDSA repeated, per-user rate limit shared in Redis on the load core (never refuses), 50 connections",
    "eddsa-revoked-10k": "EdDSA repeated, 10k other users revoked (the check on every request), 50 connections",
    "rs256-repeat": "RS256, one token repeated, 50 connections",
    "rs256-distinct": "RS256, every token different, 50 connections",
    "es256-repeat": "ES256, one token repeated, 50 connections",
    "es256-distinct": "ES256, every token different, 50 connections",
    "invalid": "Invalid tokens (bad signature: every answer a 401), 50 connections",
    "conns-1k": "1k concurrent keep-alive connections, EdDSA repeated",
    "conns-10k": "10k concurrent keep-alive connections, EdDSA repeated",
}


class Results:
    def __init__(self, doc: dict):
        self.meta = doc["meta"]
        self.rows = doc["results"]
        self.by = {(r["scenario"], r["contender"]): r for r in self.rows}

    def get(self, scenario: str, contender: str) -> dict | None:
        r = self.by.get((scenario, contender))
        return r if r and "error" not in r else None

    def value(self, scenario: str, contender: str, key: str):
        r = self.get(scenario, contender)
        return None if r is None else r.get(key)


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a, b) -> str:
    return "–" if not a or not b else f"{a / b:.2f}×"


def targets(res: Results) -> list[tuple[str, str, bool | None]]:
    """(target, figures, met) for each target of the issue."""
    out: list[tuple[str, str, bool | None]] = []
    v = res.value

    def noisy(*runs: tuple[str, str]) -> str:
        names = [f"{s}/{c}" for s, c in runs if v(s, c, "noisy")]
        return f" [noisy: {', '.join(names)}]" if names else ""

    def cpu_ratio(label: str, ours: tuple[str, str], theirs: tuple[str, str], factor: float) -> None:
        """Portcullis's CPU per request in `ours` (scenario, contender) within `factor` of
        nginx's in `theirs`."""
        p, n = v(*ours, "cpu_us_per_req"), v(*theirs, "cpu_us_per_req")
        if not (p and n):
            out.append((label, "not measured", None))
            return
        fig = f"{fmt(p, 1)} µs vs nginx {fmt(n, 1)} µs = {ratio(p, n)}" + noisy(ours, theirs)
        out.append((label, fig, p <= factor * n))

    cpu_ratio(
        "Repeated EdDSA token: Portcullis CPU/request ≤ 1.3 × nginx plain proxy",
        ("eddsa-repeat", "portcullis"),
        ("public", "nginx"),
        1.3,
    )
    cpu_ratio(
        "Public route, access logs off: Portcullis CPU/request ≤ 1.2 × nginx",
        ("public", "portcullis"),
        ("public", "nginx"),
        1.2,
    )

    def throughput(scenario: str, factor: float, label: str) -> None:
        p, e = v(scenario, "portcullis", "rps"), v(scenario, "envoy", "rps")
        pcpu, ecpu = v(scenario, "portcullis", "cpu_us_per_req"), v(scenario, "envoy", "cpu_us_per_req")
        util = v(scenario, "portcullis", "proxy_core_util")
        if not (p and e):
            out.append((label, "not measured", None))
            return
        fig = f"{fmt(p, 0)} vs {fmt(e, 0)} req/s = {ratio(p, e)}"
        if pcpu and ecpu:
            fig += f"; per busy core {fmt(1e6 / pcpu, 0)} vs {fmt(1e6 / ecpu, 0)} = {ratio(ecpu, pcpu)}"
        if util is not None and util < 0.9:
            fig += f" (Portcullis's core only {util:.0%} busy, so its req/s understates it)"
        fig += noisy((scenario, "portcullis"), (scenario, "envoy"))
        ratios = [x["rps_ratio"] for x in res.meta.get("pairs", {}).get(scenario, []) if x.get("rps_ratio")]
        if len(ratios) > 1:
            med = statistics.median(ratios)
            each = ", ".join(f"{r:.2f}" for r in ratios)
            fig = f"median of {len(ratios)} back-to-back pairs {med:.2f}× ({each}); in the tables' run " + fig
            out.append((label, fig, med >= factor))
            return
        out.append((label, fig, p >= factor * e))

    throughput("eddsa-repeat", 5, "Repeated EdDSA token: throughput ≥ 5 × Envoy jwt_authn (one pinned core)")
    for alg in ("eddsa", "rs256", "es256"):
        throughput(f"{alg}-distinct", 2, f"Distinct {alg.upper().replace('EDDSA', 'EdDSA')} tokens: throughput ≥ 2 × Envoy")

    for scenario in ("public", "eddsa-repeat"):
        p, n = v(scenario, "portcullis", "p99_ms"), v("public", "nginx", "p99_ms")
        out.append(
            (
                f"p99 at 50 connections within 1 ms of nginx ({scenario})",
                f"{fmt(p, 2)} ms vs nginx {fmt(n, 2)} ms ({p - n:+.2f} ms)"
                + noisy((scenario, "portcullis"), ("public", "nginx"))
                if p is not None and n is not None
                else "not measured",
                None if p is None or n is None else p - n <= 1.0,
            )
        )

    for scenario in ("conns-1k", "conns-10k"):
        p, n = v(scenario, "portcullis", "p99_ms"), v(scenario, "nginx", "p99_ms")
        errs = v(scenario, "portcullis", "errors") or {}
        bad = sum(errs.values()) + (v(scenario, "portcullis", "unexpected_status") or 0)
        label = f"{scenario.split('-')[1]} keep-alive connections: p99 ≤ 1.5 × nginx's p99, zero errors"
        if p is None or n is None:
            out.append((label, "not measured", None))
            continue
        fig = f"{fmt(p, 1)} ms vs nginx {fmt(n, 1)} ms = {ratio(p, n)}; {fmt(bad)} errors"
        out.append((label, fig + noisy((scenario, "portcullis"), (scenario, "nginx")), p <= 1.5 * n and bad == 0))

    for scenario in ("download", "upload"):
        pm, nm = v(scenario, "portcullis", "mb_per_s"), v(scenario, "nginx", "mb_per_s")
        pc_, nc_ = v(scenario, "portcullis", "cpu_s"), v(scenario, "nginx", "cpu_s")
        label = f"100 MiB {scenario}: MB/s ≥ nginx's, CPU ≤ 1.5 × nginx's"
        if not (pm and nm and pc_ is not None and nc_):
            out.append((label, "not measured", None))
            continue
        fig = f"{fmt(pm, 0)} vs nginx {fmt(nm, 0)} MB/s; CPU {pc_:.2f} vs {nc_:.2f} s = {ratio(pc_, nc_)}"
        out.append((label, fig + noisy((scenario, "portcullis"), (scenario, "nginx")), pm >= nm and pc_ <= 1.5 * nc_))

    base_cpu, base_p99 = v("eddsa-repeat", "portcullis", "cpu_us_per_req"), v("eddsa-repeat", "portcullis", "p99_ms")
    for scenario, cpu_max, p99_max in (("eddsa-limit-local", 1.0, None), ("eddsa-limit-redis", 10.0, 1.0)):
        cpu, p99 = v(scenario, "portcullis", "cpu_us_per_req"), v(scenario, "portcullis", "p99_ms")
        label = f"Rate limit ({scenario.rsplit('-', 1)[1]}): ≤ {cpu_max:g} µs CPU/request over eddsa-repeat"
        if p99_max is not None:
            label += f", p99 ≤ +{p99_max:g} ms"
        if cpu is None or base_cpu is None:
            out.append((label, "not measured", None))
            continue
        fig = f"{fmt(cpu)} vs {fmt(base_cpu)} µs/request ({cpu - base_cpu:+.1f})"
        ok = cpu - base_cpu <= cpu_max
        if p99_max is not None and p99 is not None and base_p99 is not None:
            fig += f"; p99 {fmt(p99, 2)} vs {fmt(base_p99, 2)} ms ({p99 - base_p99:+.2f})"
            ok = ok and p99 - base_p99 <= p99_max
        out.append((label, fig + noisy((scenario, "portcullis"), ("eddsa-repeat", "portcullis")), ok))

    cpu = v("eddsa-revoked-10k", "portcullis", "cpu_us_per_req")
    label = "Revocation check with 10k revoked users: ≤ 1 µs CPU/request over eddsa-repeat (empty set)"
    if cpu is None or base_cpu is None:
        out.append((label, "not measured", None))
    else:
        fig = f"{fmt(cpu)} vs {fmt(base_cpu)} µs/request ({cpu - base_cpu:+.1f})"
        out.append((label, fig + noisy(("eddsa-revoked-10k", "portcullis"), ("eddsa-repeat", "portcullis")), cpu - base_cpu <= 1.0))

    held = v("idle-10k", "portcullis", "rss_held_mib")
    ok = v("idle-10k", "portcullis", "conns_ok")
    out.append(
        (
            "10k idle keep-alive connections: RSS ≤ 64 MiB",
            f"{fmt(held)} MiB with {fmt(ok)} connections held" if held is not None else "not measured",
            None if held is None else held <= 64,
        )
    )
    for scenario in ("download", "upload"):
        g = v(scenario, "portcullis", "rss_growth_mib")
        out.append(
            (
                f"100 MiB streamed {scenario}: RSS growth ≤ 8 MiB",
                f"{fmt(g)} MiB (peak {fmt(v(scenario, 'portcullis', 'peak_rss_mib'))} MiB), "
                f"{fmt(v(scenario, 'portcullis', 'mb_per_s'))} MB/s"
                if g is not None
                else "not measured",
                None if g is None else g <= 8,
            )
        )
    # The production shape: both with their access log on.
    cpu_ratio(
        "Repeated EdDSA token, access logs on for both: CPU/request ≤ 1.3 × nginx with its log (public route)",
        ("eddsa-repeat", "portcullis+log"),
        ("public", "nginx+log"),
        1.3,
    )
    for scenario in ("public", "eddsa-repeat"):
        on, off = v(scenario, "portcullis+log", "cpu_us_per_req"), v(scenario, "portcullis", "cpu_us_per_req")
        out.append(
            (
                f"Access log cost ≤ 2 µs CPU/request ({scenario}, log on − log off)",
                f"{fmt(on, 1)} − {fmt(off, 1)} µs = {on - off:+.1f} µs"
                + noisy((scenario, "portcullis+log"), (scenario, "portcullis"))
                if on and off
                else "not measured",
                None if not (on and off) else on - off <= 2.0,
            )
        )
    return out


def load_table(res: Results, scenario: str) -> list[str]:
    nginx_cpu = res.value("public", "nginx", "cpu_us_per_req")
    envoy_rps = res.value(scenario, "envoy", "rps")
    lines = [
        "| contender | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | req/s per busy core | CPU × nginx | req/s × Envoy | core busy | peak RSS MiB | notes |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in [r for r in res.rows if r["scenario"] == scenario]:
        name = r["contender"]
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'].splitlines()[0][:120]} |" + " |" * 10)
            continue
        notes = []
        if r.get("noisy"):
            notes.append(f"noisy ({r['noise_cores']:.2f} cores elsewhere)")
        if r.get("attempts", 1) > 1:
            notes.append(f"{r['attempts']} attempts")
        if r.get("runs"):
            cpus = ", ".join(fmt(x["cpu_us_per_req"]) for x in r["runs"])
            notes.append(f"median of {len(r['runs'])} runs (CPU µs/req {cpus})")
        if r.get("rerun"):
            notes.append("re-run")
        if r.get("pool_wrapped"):
            notes.append("token pool wrapped")
        if r.get("unexpected_status"):
            notes.append(f"{r['unexpected_status']:,} unexpected statuses")
        errs = {k: n for k, n in r["errors"].items() if k != "status" and n}
        if errs:
            notes.append(", ".join(f"{n:,} {k} errors" for k, n in errs.items()))
        cpu = r.get("cpu_us_per_req")
        lines.append(
            f"| {name} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['p999_ms'], 2)} "
            f"| {fmt(cpu, 1)} | {fmt(1e6 / cpu, 0) if cpu else '–'} | {ratio(cpu, nginx_cpu)} "
            f"| {ratio(r['rps'], envoy_rps) if name != 'envoy' else '1.00×'} | {r['proxy_core_util']:.0%} "
            f"| {fmt(r['peak_rss_mib'])} | {'; '.join(notes)} |"
        )
    return lines


def markdown(doc: dict, chart: str | None, smoke: bool = False) -> str:
    res = Results(doc)
    m = res.meta
    ver = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    out = [
        "# Portcullis benchmark results" + (" (smoke run)" if smoke else ""),
        "",
        f"Generated by `{m.get('command', 'bench/run.sh')}` on {m['date']} "
        f"(took {m.get('elapsed_s', 0) // 60} min {m.get('elapsed_s', 0) % 60} s).",
        "",
        f"**Machine:** {m['cpu']}, {m['cpus']} CPUs{' (virtual machine)' if m['virtual'] else ''}, "
        f"{m['memory_gib']} GiB, {m['os']}, Linux {m['kernel']}. Each contender ran with one worker pinned to "
        f"CPU {m['proxy_cpu']}; wrk, the shared upstream and every helper were pinned to CPU {m['load_cpu']}.",
        "",
        f"**Versions:** {ver}.",
        "",
        *(
            [
                "**Re-runs:** "
                + "; ".join(f"{r['runs']} noisy or failed runs measured again on {r['date']}" for r in m["reruns"])
                + " (`--rerun-noisy`; marked *re-run* below).",
                "",
            ]
            if m.get("reruns")
            else []
        ),
        f"**Runs:** {m['warmup_s']} s warm-up, then {m['duration_s']} s measured per run (distinct-token runs are cut "
        f"so no token is sent twice); a run during which other processes used more than {m['noise_limit_cores']} "
        "of a core is repeated (up to twice) and flagged if it stays noisy. The runs behind the headline CPU ratio "
        "are measured three times and the median kept; the throughput targets against Envoy use the median ratio "
        "of three back-to-back Portcullis/Envoy pairs (the tables' run and two more, each on a freshly started "
        "contender).",
        "",
        "**One core per contender, no two-core target:** this machine has two cores and the second one runs wrk "
        "and the upstream, so a contender let onto both cores competes with its own load generator. Its figure "
        "measured how well it takes spare cycles from wrk, not how it scales, so it is no longer run; a two-core "
        "figure needs the load on a third core or another machine.",
        "",
    ]
    if chart:
        out += [f"![results]({chart})", ""]

    if not smoke:
        out += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for label, fig, met in targets(res):
            out.append(f"| {label} | {fig} | {'–' if met is None else ('yes' if met else '**no**')} |")
        out.append("")
    out += [
        "*CPU µs/req* is the contender's own CPU time (user + system, every thread and worker process, from "
        "`/proc/PID/stat`) over the run divided by the requests answered. *req/s per busy core* is 10⁶ ÷ that: "
        "what the contender would answer with its core 100 % busy. *core busy* is its CPU time ÷ wall time; "
        "below ~90 % the contender was not the bottleneck (the load core, running wrk and the upstream, was), "
        "so its req/s understates it and the CPU figures are the ones to compare. *× nginx* compares with nginx "
        "as a plain proxy on the public route, *× Envoy* with Envoy in the same scenario.",
        "",
    ]

    out += ["## Request scenarios", ""]
    for scenario in LOAD_ORDER:
        if any(r["scenario"] == scenario for r in res.rows):
            out += [f"### {TITLES[scenario]}", "", *load_table(res, scenario), ""]

    idle = [r for r in res.rows if r["kind"] == "idle"]
    if idle:
        out += [
            "## Idle keep-alive connections (RSS)",
            "",
            "Each connection sends one request (with the repeated EdDSA token where the contender verifies) and then stays open and idle.",
            "",
            "| contender | RSS before, MiB | 1k held: RSS MiB | 10k held: RSS MiB | connections that failed |",
            "|---|--:|--:|--:|---|",
        ]
        for c in dict.fromkeys(r["contender"] for r in idle):
            one, ten = res.by.get(("idle-1k", c), {}), res.by.get(("idle-10k", c), {})
            failed = ", ".join(f"{k}: {r.get('conns_failed', 'error')}" for k, r in (("1k", one), ("10k", ten)) if r and r.get("conns_failed", 1))
            out.append(f"| {c} | {fmt(ten.get('rss_start_mib', one.get('rss_start_mib')))} | {fmt(one.get('rss_held_mib'))} | {fmt(ten.get('rss_held_mib'))} | {failed or '0'} |")
        out.append("")

    streams = [r for r in res.rows if r["kind"] == "stream"]
    if streams:
        out += [
            "## 100 MiB streamed bodies",
            "",
            "Three `curl` requests, one after another, through the same contender (download: the upstream serves a 100 MiB file; upload: a PUT the upstream reads to the end before it answers); MB/s and CPU are the median transfer's, and the notes give every transfer's MB/s and how many KiB the contender's writes moved on average in the median one. RSS growth is the peak RSS over the three transfers minus the RSS just before them.",
            "",
            "| contender | download MB/s | download RSS growth MiB | upload MB/s | upload RSS growth MiB | CPU s (down / up) | notes |",
            "|---|--:|--:|--:|--:|--:|---|",
        ]
        for c in dict.fromkeys(r["contender"] for r in streams):
            d, u = res.by.get(("download", c), {}), res.by.get(("upload", c), {})
            notes = [f"{k} noisy ({r['noise_cores']:.2f} cores elsewhere)" for k, r in (("download", d), ("upload", u)) if r.get("noisy")]
            notes += [f"{k} failed" for k, r in (("download", d), ("upload", u)) if r and not r.get("ok")]
            notes += [
                f"{k}: " + " / ".join(fmt(t.get("mb_per_s")) for t in r["transfers"])
                + f" MB/s; {fmt(r.get('kib_per_write'))} KiB per write"
                for k, r in (("download", d), ("upload", u))
                if r.get("transfers")
            ]
            out.append(
                f"| {c} | {fmt(d.get('mb_per_s'))} | {fmt(d.get('rss_growth_mib'))} | {fmt(u.get('mb_per_s'))} "
                f"| {fmt(u.get('rss_growth_mib'))} | {fmt(d.get('cpu_s'), 2)} / {fmt(u.get('cpu_s'), 2)} | {'; '.join(notes)} |"
            )
        out.append("")

    failed = [r for r in res.rows if "error" in r]
    if failed:
        out += ["## Runs that failed", ""]
        for r in failed:
            out += [f"- {r['scenario']} / {r['contender']}:", "", "  ```", *("  " + line for line in r["error"].splitlines()[-8:]), "  ```"]
        out.append("")
    if not smoke:
        out += [
            "## How it was measured",
            "",
            "See [README.md](README.md) for the contenders' configurations, the shared upstream, the token pools, "
            "the noise checks and what the harness cannot measure on a two-core machine. The raw figures of every "
            "run are in [results.json](results.json).",
            "",
        ]
    return "\n".join(out) + "\n"


def write_chart(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = Results(doc)
    m = res.meta
    scenarios = [s for s in LOAD_ORDER if any(r["scenario"] == s for r in res.rows)]
    fig, axes = plt.subplots(2, 2, figsize=(17, 13))
    panels = [
        (axes[0][0], "cpu_us_per_req", "CPU µs per request (log; lower is better)"),
        (axes[0][1], "rps", "Requests/s on one pinned core (log; higher is better)"),
        (axes[1][0], "p99_ms", "p99 latency, ms (log; lower is better)"),
    ]
    width = 0.16

    def finish(ax, labels: list[str], title: str) -> None:
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=11)
        if not ax.containers:
            ax.text(0.5, 0.5, "not measured in this run", ha="center", transform=ax.transAxes)
            return
        ax.set_xscale("log")
        ax.grid(axis="x", which="both", alpha=0.25)
        ax.margins(x=0.15)

    for ax, key, title in panels:
        for i, c in enumerate(MAIN):
            ys, xs = [], []
            for j, s in enumerate(scenarios):
                val = res.value(s, c, key)
                if val:
                    ys.append(j + (i - 2) * width)
                    xs.append(val)
            if xs:
                bars = ax.barh(ys, xs, height=width, color=COLORS[c], label=c)
                ax.bar_label(bars, labels=[fmt(x, 1 if x < 100 else 0) for x in xs], fontsize=6.5, padding=2)
        finish(ax, scenarios, title)

    ax = axes[1][1]
    groups = [
        ("idle-1k", "rss_held_mib", "1k idle conns: RSS"),
        ("idle-10k", "rss_held_mib", "10k idle conns: RSS"),
        ("download", "rss_growth_mib", "100 MiB download: RSS growth"),
        ("upload", "rss_growth_mib", "100 MiB upload: RSS growth"),
    ]
    for i, c in enumerate(MAIN):
        ys, xs = [], []
        for j, (s, key, _) in enumerate(groups):
            val = res.value(s, c, key)
            if val is not None:
                ys.append(j + (i - 2) * width)
                xs.append(val)
        if xs:
            # A log axis cannot show 0: draw at least a sliver, label the real figure.
            bars = ax.barh(ys, [max(x, 0.05) for x in xs], height=width, color=COLORS[c], label=c)
            ax.bar_label(bars, labels=[fmt(float(x)) for x in xs], fontsize=6.5, padding=2)
    finish(ax, [g[2] for g in groups], "Memory, MiB (log; lower is better)")

    handles, labels = {}, []
    for ax in (a for row in axes for a in row):
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    labels = [c for c in MAIN if c in handles]
    handles = [handles[c] for c in labels]
    fig.legend(handles, labels, loc="upper center", ncol=5, bbox_to_anchor=(0.5, 0.955), fontsize=11)
    fig.suptitle(
        f"Portcullis {m['versions'].get('portcullis', '')} vs Envoy jwt_authn, nginx (plain proxy), Node jose, FastAPI+PyJWT\n"
        f"{m['date']} · {m['cpu']} · contender pinned to one CPU, load on the other",
        fontsize=13,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    doc = json.loads(src.read_text())
    write_chart(doc, src.parent / "results.png")
    (src.parent / "RESULTS.md").write_text(markdown(doc, "results.png"))
