"""HTML for the PR office's page: the overview and one story, from view.py's data.

Server-rendered, one small inline stylesheet, no script, nothing fetched from elsewhere: the page
works on an office PC without internet and under a CSP that allows no scripts. Every value that
came from outside (titles from hostile feeds, errors, names) goes through `_e` (html.escape,
quotes included), links only when they are http(s).
"""

from __future__ import annotations

import hashlib
from base64 import b64encode
from html import escape

from bridge.dashboard.chart import svg_chart
from bridge.dashboard.view import CHART_DAYS
from bridge.dashboard.strings import Words

REFRESH_SECONDS = 60

STYLE = """
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1320px;
padding:8px 12px;color:#111827;background:#f9fafb}
h1{font-size:1.3em;margin:.3em 0}h2{font-size:1.1em;margin:1.2em 0 .4em;border-bottom:2px solid #e5e7eb}
h3{font-size:1em;margin:.8em 0 .2em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:4px 24px}
table{border-collapse:collapse;width:100%;margin:.2em 0}th,td{text-align:left;padding:3px 6px;
vertical-align:top;border-bottom:1px solid #e5e7eb}th{font-weight:600;background:#f3f4f6}
.scroll{overflow-x:auto}.muted{color:#6b7280}.bad{color:#b91c1c;font-weight:600}.ok{color:#047857}
.warn{color:#b45309;font-weight:600}code{background:#eef2ff;padding:0 3px;border-radius:3px;
word-break:break-all}.chart{width:100%;max-width:900px;height:auto;background:#fff}
a{color:#1d4ed8}.summary{display:flex;flex-wrap:wrap;gap:8px;margin:.4em 0}
.tile{border:1px solid #d1d5db;border-radius:6px;padding:4px 10px;background:#fff}.time{white-space:nowrap;font-variant-numeric:tabular-nums}
@media (max-width:640px){body{font-size:14px;padding:6px}th,td{padding:2px 4px}}
"""
STYLE_HASH = "sha256-" + b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
"""For the Content-Security-Policy: this stylesheet and no other (no inline script at all)."""


def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def _link(url: str | None, text: str) -> str:
    """A link only to http(s) (never a javascript: URL from a feed), opened without a referrer."""
    if not url or not url.lower().startswith(("https://", "http://")):
        return _e(text)
    return f'<a href="{_e(url)}" rel="noopener noreferrer">{_e(text)}</a>'


def _who(delivery: dict) -> str:
    """The target, and for WhatsApp the recipient with the middle of the number hidden: the page may
    be open on the office LAN, and the delivery's id (in the command) is what settles it."""
    recipient = delivery.get("recipient") or ""
    if len(recipient) > 8:
        recipient = recipient[:4] + "…" + recipient[-4:]
    return _e(delivery["target"] + (f" {recipient}" if recipient else ""))


def _commands(text: str) -> str:
    """Escape a hint, then show its `command` spans as code."""
    parts = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _page(words: Words, title: str, body: str, refresh: bool = True) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (f'<!DOCTYPE html><html lang="{words.language}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">{meta}'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>")


def overview_html(view: dict, words: Words) -> str:
    body = [f"<h1>{_e(words('title'))}</h1>",
            f'<p class="muted">{_e(words("updated", when=words.when(view["now"])))}</p>']
    if view["dry_run"]:
        body.append(f'<p class="warn">{_e(words("dry_run"))}</p>')
    body += _summary(view, words) + _today(view, words) + _queue(view["queue"], words)
    body += [f'<div class="grid"><section>{"".join(_sources(view["sources"], words))}</section>',
             f'<section>{"".join(_spend(view["spend"], words))}</section></div>']
    chart = view["chart"]
    body += [f'<h2 id="chart">{_e(words("chart"))}</h2>',
             svg_chart(chart["days"], chart["series"], words.short_day, words("chart_label"))]
    return _page(words, words("title"), "".join(body))


def _summary(view: dict, words: Words) -> list[str]:
    """One line to read from across the room: posted today, waiting, needing a person."""
    queue = view["queue"]
    posted = sum(t["posted_today"] for t in view["spend"])
    attention = len(queue["in_doubt"]) + len(queue["failed"]) + len(queue["held"])
    troubled = sum(1 for s in view["sources"] if s["problem"])
    tiles = [("ok", words("sum_posted", count=posted)),
             ("muted" if queue["pending_total"] else "ok", words("sum_waiting", count=queue["pending_total"])),
             ("bad" if attention else "ok", words("sum_attention", count=attention)),
             ("bad" if troubled else "ok", words("sum_sources", count=troubled))]
    return ['<p class="summary">' + "".join(f'<span class="tile {css}">{_e(text)}</span>' for css, text in tiles)
            + "</p>"]


def _today(view: dict, words: Words) -> list[str]:
    out = [f'<h2 id="today">{_e(words("today"))}: {_e(words.day(words.local(view["now"]).date()))}</h2>',
           '<div class="grid">']
    for network in view["today"]:
        kind = "" if network["kind"] == network["name"] else f' <span class="muted">({_e(network["kind"] or "?")})</span>'
        out.append(f'<section class="network" data-network="{_e(network["name"])}">'
                   f'<h3>{_e(network["name"])}{kind}</h3>')
        if not network["posts"]:
            out.append(f'<p class="muted">{_e(words("no_posts_today"))}</p></section>')
            continue
        out.append("<table><tbody>")
        for post in network["posts"]:
            if "reached" in post:
                live = _e(words("recipients", sent=post["reached"], total=post["recipients"]))
            else:
                live = _link(post["url"], words("view_post")) if post["url"] else f'<span class="muted">{_e(words("no_link"))}</span>'
            out.append(f'<tr class="post"><td class="time">{_e(words.clock(post["sent_at"]))}</td>'
                       f'<td><a href="/story/{int(post["item_id"])}">{_e(post["title"])}</a></td><td>{live}</td></tr>')
        out.append("</tbody></table>")
        if network["more"]:
            out.append(f'<p class="muted">{_e(words("more_posts", count=network["more"]))}</p>')
        out.append("</section>")
    out.append("</div>")
    return out


def _queue(queue: dict, words: Words) -> list[str]:
    out = [f'<h2 id="queue">{_e(words("queue"))}</h2>']
    rows = []
    for d in queue["in_doubt"]:  # status's own hints are English: the same advice in the page's words
        todo = (words("doubt_recheck", when=words.when(d["next_attempt_at"])) if d.get("next_attempt_at")
                else words("doubt_settle", id=d["id"]))
        rows.append((words("in_doubt"), "bad", d, d["last_error"] or "", todo))
    for d in queue["failed"]:
        rows.append((words("failed"), "bad", d, d["last_error"] or "", words("failed_todo", id=d["id"])))
    for h in queue["held"]:
        rows.append((words("held"), "warn", None, words("held_stories", count=h["stories"], source=h["source"]),
                     words("held_todo", source=h["source"])))
    for d in queue["pending"]:
        why = words("waiting_because", why=d["why"]) if d.get("why") else ""
        rows.append((words("pending"), "muted", d, why, words("pending_todo", id=d["id"])))
    if not rows:
        return out + [f'<p class="ok">{_e(words("queue_empty"))}</p>']
    out.append(f'<div class="scroll"><table><thead><tr><th>{_e(words("state"))}</th><th>{_e(words("network"))}</th>'
               f'<th>{_e(words("story"))}</th><th>{_e(words("note"))}</th><th>{_e(words("settle"))}</th></tr></thead><tbody>')
    for label, css, d, note, todo in rows:
        if d is None:
            who, story = "", ""
        else:
            who = _who(d)
            story = f'<span class="muted">{_e(d["source"])}</span> {_e(d["title"])}'
        out.append(f'<tr class="queued"><td class="{css}">{_e(label)}</td><td>{who}</td><td>{story}</td>'
                   f"<td>{_e(note)}</td><td>{_commands(todo)}</td></tr>")
    out.append("</tbody></table></div>")
    hidden = queue["pending_total"] - len(queue["pending"])
    if hidden > 0:
        out.append(f'<p class="muted">{_e(words("pending"))}: {_e(words("more_pending", count=hidden))}</p>')
    return out


def _sources(sources: list[dict], words: Words) -> list[str]:
    out = [f'<h2 id="sources">{_e(words("sources"))}</h2><div class="scroll"><table><thead><tr>'
           f'<th>{_e(words("source"))}</th><th>{_e(words("state"))}</th><th>{_e(words("last_new"))}</th></tr></thead><tbody>']
    for s in sources:
        flags = []
        for key, values in s["flags"]:
            if values.get("when") is not None:
                values = {**values, "when": words.when(values["when"])}
            flags.append(words(key, **values))
        css = "ok" if s["ok"] else ("bad" if s["problem"] else "muted")
        error = f'<br><span class="muted">{_e(s["last_error"])}</span>' if s["last_error"] and not s["ok"] else ""
        last_new = words.when(s["last_new"]) if s["last_new"] else words("not_recently", days=CHART_DAYS)
        out.append(f'<tr class="source" data-source="{_e(s["name"])}"><td>{_e(s["name"])}</td>'
                   f'<td class="{css}">{_e("; ".join(flags))}{error}</td><td class="time">{_e(last_new)}</td></tr>')
    out.append("</tbody></table></div>")
    return out


def _spend(targets: list[dict], words: Words) -> list[str]:
    out = [f'<h2 id="spend">{_e(words("spend"))}</h2><div class="scroll"><table><thead><tr>'
           f'<th>{_e(words("network"))}</th><th>{_e(words("posted_today"))}</th><th>{_e(words("spent_today"))}</th>'
           f'<th>{_e(words("spent_month"))}</th><th>{_e(words("target_state"))}</th></tr></thead><tbody>']
    for t in targets:
        today = words.money(t["spent_today"])
        if t["budget_per_day"] is not None:
            today = words("of_budget", amount=today, budget=words.money(t["budget_per_day"]))
        css = "ok" if t["state"] == "ok" else ("bad" if t["state"].startswith("PAUSED") else "warn")
        out.append(f'<tr class="target" data-target="{_e(t["name"])}"><td>{_e(t["name"])}</td><td>{t["posted_today"]}</td>'
                   f'<td>{_e(today)}</td><td>{_e(words.money(t["spent_month"]))}</td>'
                   f'<td class="{css}">{_e(t["state"])}</td></tr>')
    out.append("</tbody></table></div>")
    return out


def story_html(story: dict, words: Words) -> str:
    body = [f'<p><a href="/">{_e(words("back"))}</a></p><h1>{_e(story["title"])}</h1>',
            f'<p class="muted">{_e(words("story_source", source=story["source"], when=words.when(story["first_seen_at"])))}'
            f' · {_link(story["link"], words("original"))}</p>', f'<h2>{_e(words("deliveries"))}</h2>']
    if not story["deliveries"]:
        body.append(f'<p class="muted">{_e(words("no_deliveries"))}</p>')
    else:
        body.append(f'<div class="scroll"><table><thead><tr><th>{_e(words("network"))}</th><th>{_e(words("state"))}</th>'
                    f'<th>{_e(words("sent_at"))}</th><th>{_e(words("link"))}</th><th>{_e(words("note"))}</th></tr></thead><tbody>')
        for d in story["deliveries"]:
            who = _who(d)
            when = words.when(d["sent_at"]) if d["sent_at"] else ""
            link = _link(d["url"], words("view_post")) if d["url"] else ""
            body.append(f'<tr class="delivery" data-state="{_e(d["state"])}"><td>{who}</td>'
                        f'<td>{_e(words("ds_" + d["state"]) if words.has("ds_" + d["state"]) else d["state"])}</td>'
                        f'<td class="time">{_e(when)}</td><td>{link}</td><td>{_e(d["last_error"])}</td></tr>')
        body.append("</tbody></table></div>")
    return _page(words, story["title"], "".join(body))


def message_html(words: Words, text: str) -> str:
    """A page that only says something (no such story, the database cannot be read)."""
    return _page(words, words("title"), f'<p><a href="/">{_e(words("back"))}</a></p><p class="bad">{_e(text)}</p>')

