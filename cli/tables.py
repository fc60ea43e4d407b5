"""Plain-text tables for `status`, `service ls`, `service ps`, `node doctor` and the rest."""


def table(headers, rows):
    rows = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def duration(seconds):
    if seconds is None:
        return None
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def nodes_table(nodes):
    return table(["node", "address", "status", "availability", "containers", "last seen"],
                 [[n["name"], n["address"], n["status"], n.get("availability"), n["containers"], n.get("last_seen")]
                  for n in nodes])


def services_table(services):
    return table(["service", "image", "replicas", "status", "version"],
                 [[s["name"], s["spec"]["image"], f"{s['replicas']['running']}/{s['replicas']['desired']}"
                   + (" global" if s.get("mode") == "global" else ""),
                   s["status"], s["version"]] for s in services])


def containers_table(containers):
    return table(["container", "service", "slot", "node", "image", "status", "uptime"],
                 [[c["name"], c["service"], c["slot"], c["node"], c["image"], c["status"],
                   duration(c.get("uptime_s"))] for c in containers])


def masters_table(masters):
    return table(["master", "api", "role", "epoch", "reachable"],
                 [[m["name"], m["api"], m.get("role"), m.get("epoch"), m.get("reachable")] for m in masters])


def stats_table(rows):
    def mib(n):
        return None if n is None else f"{n / 1024 / 1024:.1f}MiB"
    return table(["container", "node", "cpu %", "memory", "mem %"],
                 [[r["name"], r["node"], r["cpu_percent"], mib(r["memory_bytes"]), r["memory_percent"]] for r in rows])


def doctor_table(reports):
    return table(["node", "check", "result", "detail", "fix"],
                 [[r["node"], c["check"], "pass" if c["ok"] else "FAIL", c["detail"], c["hint"] or None]
                  for r in reports for c in r["checks"]])
