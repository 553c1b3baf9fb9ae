"""Turn the raw results into a table, a PNG plot and docs/benchmarks.md.

``python -m bench.report bench/out/latest.json`` re-renders the report from a
saved run without measuring again.
"""
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.stats import median, percentile, spread

CPU_PARTS = ("gateway", "storage", "imaging", "broker", "driver")
CPU_COLORS = {"gateway": (86, 180, 233), "storage": (230, 159, 0), "imaging": (0, 114, 178),
              "broker": (204, 121, 167), "driver": (153, 153, 153), "render": (0, 158, 115)}


# -- summaries ------------------------------------------------------------------

def layouts_of(results):
    return list(results["rounds"][0]["pipeline"])


def _fmt(value, digits=0, none="–"):
    if value is None:
        return none
    return "{:,.{}f}".format(value, digits)


def baseline_summary(results, route):
    runs = [round_["baselines"][route] for round_ in results["rounds"]]
    limits = [round_["baselines"]["fast"]["throughput"] for round_ in results["rounds"]]
    return {
        "throughput": median([run["throughput"] for run in runs]),
        "spread": spread([run["throughput"] for run in runs]),
        "ratio": median([run["throughput"] / limit for run, limit in zip(runs, limits)]),
        "cpu_ms": median([run["cpu_per_image"] * 1000 for run in runs]),
        "wall_ms": median([run["wall_per_image"] * 1000 for run in runs]),
    }


def layout_summary(results, label):
    runs = [round_["pipeline"][label] for round_ in results["rounds"]]
    limits = [round_["baselines"]["fast"]["throughput"] for round_ in results["rounds"]]
    latencies = [ms for run in runs for ms in run["upload_ms"]]
    traffic = next((run["traffic"] for run in runs if run.get("traffic")), None)
    images = runs[0]["images"]
    rss = lambda key: max((run["peak_rss_mb"].get(key) or 0.0) for run in runs) or None
    return {
        "label": label,
        "throughput": median([run["throughput"] for run in runs]),
        "spread": spread([run["throughput"] for run in runs]),
        "ratio": median([run["throughput"] / limit for run, limit in zip(runs, limits)]),
        "upload_p50_ms": percentile(latencies, 50),
        "upload_p99_ms": percentile(latencies, 99),
        "end_to_end_p50_s": median([run["end_to_end_p50_s"] for run in runs]),
        "job_s": median([median(run["job_seconds"]) for run in runs]),
        "rss": {key: rss(key) for key in ("gateway", "storage", "imaging", "render_worker")},
        "cpu_ms": {part: median([run["cpu_seconds"][part] / run["done"] * 1000 for run in runs if run["done"]])
                   for part in CPU_PARTS},
        "broker_in": traffic["recv_oct"] / images if traffic else None,
        "broker_out": traffic["send_oct"] / images if traffic else None,
        "messages": sum(traffic["exchanges"].values()) / images if traffic else None,
        "errors": sum(run["errors"] for run in runs),
        "runs": len(runs),
        **_paced_summary(runs),
    }


def _paced_summary(runs):
    paced = [run for run in runs if "paced_upload_ms" in run]
    if not paced:
        return {"paced_p50_ms": None, "paced_p99_ms": None, "paced_waiting": None, "paced_late": None,
                "paced_errors": 0}
    latencies = [ms for run in paced for ms in run["paced_upload_ms"]]
    return {
        "paced_p50_ms": percentile(latencies, 50) if latencies else None,
        "paced_p99_ms": percentile(latencies, 99) if latencies else None,
        # the fewest jobs left waiting at the end of a paced phase: > 0 means
        # imaging never ran out of work while it was measured
        "paced_waiting": min(run["paced_jobs_waiting_at_end"] for run in paced),
        "paced_late": sum(run["paced_late"] for run in paced),
        "paced_errors": sum(run["paced_errors"] for run in paced),
    }


def mean_original_bytes(results):
    run = results["rounds"][0]["pipeline"][layouts_of(results)[0]]
    return run["original_bytes"] / run["images"]


# -- the plain-text table ---------------------------------------------------------

def table_rows(results):
    header = ["route / imaging layout", "img/s (median)", "min–max", "× limit", "burst upload p50 / p99 ms",
              "paced upload p50 / p99 ms (jobs waiting)", "peak RSS gw / storage / imaging (+worker) MB",
              "broker in / out per img", "errors"]
    rows = []
    for route, name in (("naive", "naive Pillow, 2 processes"), ("fast", "fast route, 2 processes = limit")):
        summary = baseline_summary(results, route)
        rows.append([name, _fmt(summary["throughput"], 2), _range(summary["spread"]),
                     _fmt(summary["ratio"], 2), "", "", "", "", ""])
    for label in layouts_of(results):
        s = layout_summary(results, label)
        rss = "{} / {} / {}{}".format(
            _fmt(s["rss"]["gateway"]), _fmt(s["rss"]["storage"]), _fmt(s["rss"]["imaging"]),
            " (+{})".format(_fmt(s["rss"]["render_worker"])) if s["rss"]["render_worker"] else "")
        broker = "{} / {}".format(_size(s["broker_in"]), _size(s["broker_out"]))
        rows.append(["pipeline {} ({} proc × MAX_WORKERS {})".format(label, *label.split("x")),
                     _fmt(s["throughput"], 2), _range(s["spread"]), _fmt(s["ratio"], 2),
                     "{} / {}".format(_fmt(s["upload_p50_ms"]), _fmt(s["upload_p99_ms"])),
                     "{} / {} (≥ {}){}".format(_fmt(s["paced_p50_ms"]), _fmt(s["paced_p99_ms"]),
                                               _fmt(s["paced_waiting"]),
                                               ", {} sent late".format(s["paced_late"]) if s["paced_late"] else ""),
                     rss, broker, str(s["errors"] + s["paced_errors"])])
    return header, rows


def _mb(value):
    return None if value is None else value / 1e6


def _size(value):
    """Bytes as KB below a megabyte (the claim-check path moves ids, not images)."""
    if value is None:
        return "–"
    return "{:.1f} KB".format(value / 1e3) if value < 1e6 else "{:.1f} MB".format(value / 1e6)


def set_up_traffic_text(results):
    """Each layout's start-up and warm-up traffic (in / out), from the first repeat."""
    first = results["rounds"][0]["pipeline"]
    parts = ["{} {} / {}".format(label, _size(run["set_up_traffic"]["recv_oct"]),
                                 _size(run["set_up_traffic"]["send_oct"]))
             for label, run in first.items() if run.get("set_up_traffic")]
    return ", ".join(parts) or "not measured"


def small_rows(results):
    """The 2 MP-only run: the pipeline against the limit measured beside it, per round."""
    rounds = [round_["small"] for round_ in results["rounds"] if "small" in round_]
    if not rounds:
        return None
    ratios = [r["pipeline"]["throughput"] / r["limit"]["throughput"] for r in rounds]
    first = rounds[0]["pipeline"]
    traffic = first.get("traffic")
    images = first.get("images") or 0
    header = ["2 MP images only", "limit img/s", "pipeline img/s", "× limit (per-round median, min–max)",
              "burst upload p50 / p99 ms", "broker in / out per img", "errors"]
    row = ["pipeline {}".format(first.get("layout", "")),
           _fmt(median([r["limit"]["throughput"] for r in rounds]), 2),
           _fmt(median([r["pipeline"]["throughput"] for r in rounds]), 2),
           "{} ({}–{})".format(_fmt(median(ratios), 2), _fmt(min(ratios), 2), _fmt(max(ratios), 2)),
           "{} / {}".format(_fmt(median([r["pipeline"]["upload_p50_ms"] for r in rounds])),
                            _fmt(median([r["pipeline"]["upload_p99_ms"] for r in rounds]))),
           "{} / {}".format(_size(traffic["recv_oct"] / images if traffic and images else None),
                            _size(traffic["send_oct"] / images if traffic and images else None)),
           str(sum(r["pipeline"]["errors"] for r in rounds))]
    return header, [row]


def _range(pair):
    low, high = pair
    return "{}–{}".format(_fmt(low, 2), _fmt(high, 2)) if low is not None else "–"


def cpu_rows(results):
    header = ["", *("{} ms/img".format(part) for part in CPU_PARTS), "total ms/img", "imaging job s (median)"]
    fast = baseline_summary(results, "fast")
    rows = [["fast route (render only)", "", "", _fmt(fast["cpu_ms"]), "", "", _fmt(fast["cpu_ms"]),
             _fmt(fast["wall_ms"] / 1000, 2) + " (render call)"]]
    for label in layouts_of(results):
        s = layout_summary(results, label)
        cpu = s["cpu_ms"]
        rows.append(["pipeline " + label, *(_fmt(cpu[part]) for part in CPU_PARTS),
                     _fmt(sum(cpu[part] or 0 for part in CPU_PARTS)), _fmt(s["job_s"], 2)])
    return header, rows


def text_table(header, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths))
    return "\n".join([line(header), line(["-" * width for width in widths]), *map(line, rows)])


def markdown_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(out)


def print_report(results, out=sys.stdout):
    for table in (table_rows(results), small_rows(results), cpu_rows(results)):
        if table:
            print(text_table(*table), file=out)
            print(file=out)
    huge = results.get("huge")
    if huge:
        print(huge_sentence(results), file=out)


def huge_sentence(results):
    huge, rss = results["huge"], results["huge"]["peak_rss_mb"]
    worker = rss.get("render_worker")
    text = ("50 MP JPEG ({}x{}, {:.1f} MB): status {}, peak RSS imaging {} MB{}, gateway {} MB, "
            "storage {} MB; in-process render alone peaks at {} MB.").format(
        huge["width"], huge["height"], huge["bytes"] / 1e6, huge["status"], _fmt(rss["imaging"]),
        " + render worker {} MB".format(_fmt(worker)) if worker else "",
        _fmt(rss["gateway"]), _fmt(rss["storage"]), _fmt(results["huge_inprocess_mb"][1]))
    return text


# -- the plot -----------------------------------------------------------------------

def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def plot(results, path):
    """Two panels: throughput (median, min–max) vs the limit; CPU ms per image."""
    bars = [("naive Pillow", baseline_summary(results, "naive"), (150, 150, 150)),
            ("fast route (limit)", baseline_summary(results, "fast"), (0, 158, 115))]
    bars += [("pipeline " + label, layout_summary(results, label), (0, 114, 178))
             for label in layouts_of(results)]
    image = Image.new("RGB", (1400, 110 + 52 * len(bars) + 70 + 44 * (len(bars) - 1) + 80), "white")
    draw = ImageDraw.Draw(image)
    y = _throughput_panel(draw, bars, top=20)
    _cpu_panel(draw, results, top=y + 40)
    image.save(path, optimize=True)


def _throughput_panel(draw, bars, top):
    left, right = 300, 1340
    scale_max = max(bar[1]["spread"][1] or bar[1]["throughput"] for bar in bars) * 1.3
    x_of = lambda value: left + (right - left) * value / scale_max
    draw.text((20, top), "Throughput, images/s (bar: median; line: min-max over repeats)", fill="black", font=_font(22))
    y = top + 45
    for name, summary, color in bars:
        draw.text((20, y + 8), name, fill="black", font=_font(18))
        draw.rectangle((left, y, x_of(summary["throughput"]), y + 34), fill=color)
        low, high = summary["spread"]
        if low is not None:
            draw.line((x_of(low), y + 17, x_of(high), y + 17), fill="black", width=2)
        label_x = x_of(max(summary["throughput"], high or 0)) + 8  # right of bar and whisker
        draw.text((label_x, y + 8), "{:.2f}  ({:.0%} of limit)".format(
            summary["throughput"], summary["ratio"]), fill="black", font=_font(16))
        y += 52
    limit_x = x_of(bars[1][1]["throughput"])
    for dash in range(top + 45, y, 12):
        draw.line((limit_x, dash, limit_x, dash + 6), fill=(0, 120, 80), width=2)
    return y


def _cpu_panel(draw, results, top):
    left, right = 300, 1340
    rows = [("fast route", {"render": baseline_summary(results, "fast")["cpu_ms"]})]
    rows += [("pipeline " + label, layout_summary(results, label)["cpu_ms"]) for label in layouts_of(results)]
    scale_max = max(sum(v or 0 for v in parts.values()) for _, parts in rows) * 1.15
    x_of = lambda value: left + (right - left) * value / scale_max
    draw.text((20, top), "CPU time per image, ms (all processes; broker includes other vhosts' load)",
              fill="black", font=_font(22))
    y = top + 45
    for name, parts in rows:
        draw.text((20, y + 6), name, fill="black", font=_font(18))
        x = left
        for part in ("render", *CPU_PARTS):
            width = x_of(parts.get(part) or 0) - left
            if width > 0:
                draw.rectangle((x, y, x + width, y + 30), fill=CPU_COLORS[part])
                x += width
        draw.text((x + 8, y + 6), "{:.0f}".format(sum(v or 0 for v in parts.values())), fill="black", font=_font(16))
        y += 44
    x = left
    for part in ("render", *CPU_PARTS):
        draw.rectangle((x, y + 10, x + 18, y + 28), fill=CPU_COLORS[part])
        draw.text((x + 24, y + 10), part, fill="black", font=_font(16))
        x += 150


# -- docs/benchmarks.md ---------------------------------------------------------------

def markdown(results, png_name):
    meta = results["meta"]
    sections = [
        "# Benchmarks",
        "",
        "Generated by `{}` on {} — do not edit by hand; run `make bench` again.".format(
            meta["command"], meta["date"]),
        "",
        "* Machine: {} × {} (`nproc` = {}), {} GiB RAM; shared and noisy, so compare ratios, "
        "not absolute numbers.".format(meta["nproc"], meta["cpu_model"], meta["nproc"], meta["mem_gib"]),
        "* Software: Python {}, Pillow {}, nameko {}, RabbitMQ {}.".format(
            meta["python"], meta["pillow"], meta["nameko"], meta["rabbitmq"]),
        "* Code: `{}`{}.{}".format(meta["git"]["commit"], _dirty(meta["git"]),
                                   " " + meta["note"] if meta.get("note") else ""),
        "* Images: {} (seeded, generated by `bench/images.py`, cached in `bench/out/`); presets {}; "
        "serializer {}.".format(_describe_images(meta["images"]), _describe_presets(meta["presets"]),
                                meta["serializer"]),
        "* Each measurement {} times, interleaved; medians reported, min–max shown. Pipeline: "
        "{} HTTP clients upload every image; throughput = images / (first upload sent → last "
        "`image_processed` event); upload latency = POST → 202, pooled over the repeats.".format(
            len(results["rounds"]), meta["clients"]),
        "* Upload latency two ways. *Burst*: the {0} clients send every image back to back (the "
        "throughput run), so uploads also queue behind each other in gateway and storage. *Paced*: "
        "after the throughput run, a backlog (every image again, tagged with a JPEG comment so it "
        "is new content) keeps imaging busy while {0} clients upload every image once more at "
        "the run's own throughput, open loop; \"jobs waiting\" is the fewest jobs still queued at "
        "the end of a paced phase (> 0: the workers were saturated the whole time).".format(
            meta["clients"]),
        "",
        "![throughput by layout vs baselines]({})".format(png_name),
        "",
        "## Throughput, latency, memory, broker traffic",
        "",
        markdown_table(*table_rows(results)),
        "",
        "Layout `PxW` = P imaging processes with `MAX_WORKERS=W` (also their AMQP prefetch). "
        "Broker in/out = AMQP bytes RabbitMQ received/sent for the run's vhost "
        "(management API `recv_oct`/`send_oct`, frames, headers, heartbeats and this "
        "benchmark's completion listener included) per image, between the counters before "
        "the first upload and after the last completion (both settled), in the first repeat; "
        "the cluster's start-up and warm-up ({}) are not counted. The mean original is "
        "{:.2f} MB.".format(set_up_traffic_text(results), mean_original_bytes(results) / 1e6),
        "",
        *(["## Small images: the fixed cost per image", "",
            markdown_table(*small_rows(results)), "",
            "The 2 MP images alone (where the cost per job weighs most against the render), "
            "each round's limit measured right before its pipeline run.", ""]
          if small_rows(results) else []),
        "## CPU per image",
        "",
        markdown_table(*cpu_rows(results)),
        "",
        "CPU of each process from `/proc/<pid>/stat` over the measured window (imaging includes "
        "any render-worker children); broker = the local `beam.smp`, which also serves other "
        "vhosts on this shared machine; driver = this benchmark's client threads.",
        "",
        "## Message sizes by counting (one 12 MP image)",
        "",
        markdown_table(["message", "body bytes per upload"], [
            [name, _fmt(size)] for name, size, *_ in results["costs"]["messages"]["large"]]),
        "",
        _message_sentence(results),
        "",
        "## Non-Pillow steps, measured in-process (one 12 MP original)",
        "",
        markdown_table(["step", "ms"], [
            [name, _fmt(ms, 1)] for name, ms in results["costs"]["steps"]["large"].items()]),
        "",
        "## Memory: one 50 MP JPEG",
        "",
        (huge_sentence(results) + " Target: < 300 MB.") if results.get("huge") else "(skipped)",
        "",
        "## What moved the numbers",
        "",
        *("* " + finding for finding in findings(results)),
        "* Changes tried on scratch copies of the code and their measured effect (serializer, "
        "fsync, storage off the event loop, direct original reads, batched RPCs; then transient "
        "RPC messages, two storage calls per job, malloc tuning, render niceness): "
        "[bench/EXPERIMENTS.md](../bench/EXPERIMENTS.md).",
        "",
    ]
    return "\n".join(sections)


def _dirty(git):
    if not git.get("dirty"):
        return ""
    return " with uncommitted changes in {}".format(", ".join("`{}`".format(f) for f in git["dirty"]))


def _describe_images(groups):
    return ", ".join("{} × {}x{} (mean {:.2f} MB)".format(g["count"], g["width"], g["height"], g["mean_bytes"] / 1e6)
                     for g in groups)


def _describe_presets(presets):
    return ", ".join("{name} ({fit} {width}x{height} {format} q{quality})".format(**preset) for preset in presets)


def _message_sentence(results):
    large = results["costs"]["summary"]["large"]
    return ("{:g} messages per image; bodies total {:,} bytes for a {:.2f} MB original: no image "
            "byte crosses the broker (the claim-check path: the bytes go through the blob store "
            "under grants); the two events carry only ids ({} bytes together).").format(
        large["messages"], large["body_bytes"], large["original_bytes"] / 1e6, large["event_bytes"])


def findings(results):
    """Sentences computed from this run's numbers."""
    fast, naive = baseline_summary(results, "fast"), baseline_summary(results, "naive")
    layouts = [layout_summary(results, label) for label in layouts_of(results)]
    best = max(layouts, key=lambda s: s["throughput"])
    out = [
        "Draft decode + chained resizes: the fast route renders {:.1f}× the naive Pillow route "
        "({:.0f} vs {:.0f} ms CPU per image).".format(
            fast["throughput"] / naive["throughput"], fast["cpu_ms"], naive["cpu_ms"]),
        "Best pipeline layout {}: {:.2f} img/s = {:.0%} of the limit; by layout: {}.".format(
            best["label"], best["throughput"], best["ratio"],
            ", ".join("{} {:.2f}".format(s["label"], s["throughput"]) for s in layouts)),
    ]
    cpu = best["cpu_ms"]
    total = sum(cpu[part] or 0 for part in CPU_PARTS)
    out.append(
        "CPU per image in layout {}: {:.0f} ms in all, vs {:.0f} ms for rendering alone; outside "
        "Pillow: imaging overhead {:.0f}, storage {:.0f}, gateway {:.0f}, broker {:.0f}, client {:.0f} ms. "
        "On {} cores that caps throughput at ~{:.2f} img/s.".format(
            best["label"], total, fast["cpu_ms"], (cpu["imaging"] or 0) - fast["cpu_ms"], cpu["storage"] or 0,
            cpu["gateway"] or 0, cpu["broker"] or 0, cpu["driver"] or 0,
            results["meta"]["nproc"], results["meta"]["nproc"] * 1000 / total))
    paced = [s for s in layouts if s["paced_p99_ms"] is not None]
    if paced:
        out.append(
            "Upload latency with {} clients (target p99 ≤ 100 ms): burst p99 {}; paced, with imaging "
            "saturated, p99 {} ms (jobs still waiting at the end of every paced phase: {}).".format(
                results["meta"]["clients"],
                ", ".join("{} {:.0f}".format(s["label"], s["upload_p99_ms"]) for s in layouts),
                ", ".join("{} {:.0f}".format(s["label"], s["paced_p99_ms"]) for s in paced),
                "yes" if all((s["paced_waiting"] or 0) > 0 for s in paced) else
                "no, in " + ", ".join(s["label"] for s in paced if not s["paced_waiting"])))
    steps, serializer = results["costs"]["steps"]["large"], results["meta"]["serializer"]
    out.append(
        "Serialization ({}): dumping + loading one 12 MP original costs {:.1f} ms ({:.0f} ms with "
        "JSON+base64); it happens twice per image (gateway→storage, storage→imaging).".format(
            serializer, steps[serializer + " dumps"] + steps[serializer + " loads"],
            steps["json dumps"] + steps["json loads"]))
    out.append(
        "Durability: a 12 MP blob write takes {:.1f} ms with fsync vs {:.1f} ms without; a whole "
        "put_original (blob + catalog) {:.1f} ms.".format(
            steps["blob put, fsync"], steps["blob put, no fsync"], steps["put_original (blob+catalog, fsync)"]))
    single = [s for s in layouts if s["label"].endswith("x1")]
    if len(single) > 1:
        out.append("Imaging job time (claim → complete, median) by layout: {}; the render "
                   "call alone takes {:.2f} s in the baseline.".format(
                       ", ".join("{} {:.2f} s".format(s["label"], s["job_s"] or 0) for s in layouts),
                       fast["wall_ms"] / 1000))
    return out


def write_doc(results, doc_path):
    doc_path = Path(doc_path)
    png_path = doc_path.with_suffix(".png")
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    plot(results, png_path)
    doc_path.write_text(markdown(results, png_path.name))
    return doc_path, png_path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    results = json.loads(Path(argv[0] if argv else "bench/out/latest.json").read_text())
    print_report(results)
    if len(argv) > 1:
        print("wrote", *write_doc(results, argv[1]))


if __name__ == "__main__":
    main()
