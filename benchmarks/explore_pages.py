"""`npformer explore`: how fast a typed sentence redraws, and the screenshots of docs/explore.md.

Starts the explorer's server on a free port with the toy models, opens it in
headless Chromium (tests/browser.py, the DevTools pipe) and

  1. types sentences into the text box one character at a time, as a person
     does, and reads the times the page records after each redraw: the server's
     compute time, the request's round trip, and the whole redraw (from the
     input event to the finished picture). Views: attention (translator and LM),
     next token (LM), translation (translator);
  2. sends every endpoint the same request many times from a Python client (no
     browser) and reports its round trip and the server's own time;
  3. takes one screenshot of each view (PNG, reduced to a 128-colour palette)
     into docs/img/explore_<view>.png.

Needs the toy models: `npformer train`, `npformer pretrain`, `npformer finetune
--from runs/lm/best.npz`, and, for the BPE word parts of the tokens view, a BPE
translator: `npformer train --tokenizer bpe --vocab-size 400 --max-minutes 1.5
--out-dir runs/toy-bpe`. Run from the repository root:

    python benchmarks/explore_pages.py               # times, and the screenshots
    python benchmarks/explore_pages.py --no-shots    # times only
    python benchmarks/explore_pages.py --no-shots --endpoints-only   # the endpoints' times

Times on a shared machine vary with its load: report the median and the 90th
percentile over many redraws, never a single one.
"""
import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "tests"))  # the browser driver lives with the tests that use it

from browser import Browser  # noqa: E402
from npformer.training.checkpoint import load_checkpoint  # noqa: E402
from npformer.explore import views  # noqa: E402
from npformer.explore.server import Explorer, start_in_thread  # noqa: E402
from npformer.nn.threads import set_blas_threads  # noqa: E402

MODELS = ["runs/toy/best.npz", "runs/lm/best.npz", "runs/classify/best.npz",
          "runs/toy-bpe/best.npz"]
TRANSLATOR, LM, CLASSIFIER, BPE = range(4)
TYPED = {TRANSLATOR: ["the big dog sees a small cat .", "the old woman sees the girls ."],
         LM: ["the old woman sees the girls", "lo kan vide la gato"]}
READY = "document.body && ['yes', 'error'].includes(document.body.dataset.ready)"
SHOTS = {  # view -> URL state of its screenshot
    "tokens": dict(model=BPE, view="tokens", text="the old woman sees the girls near the houses ."),
    "embeddings": dict(model=TRANSLATOR, view="embeddings", text="the big dog sees a small cat .",
                       token=58),
    "attention": dict(model=TRANSLATOR, view="attention", text="the big dog sees a small cat .",
                      op="decoder.1.cross_attn", head=0, hover=4, cmp="decoder.1.cross_attn:2"),
    "next": dict(model=LM, view="next", text="the old woman", temperature=0.8, top_k=10),
    "translate": dict(model=TRANSLATOR, view="translate", text="the big dog sees a small cat .",
                      method="beam", beam=4, step=3),
    "classify": dict(model=CLASSIFIER, view="classify", text="lo kan vide la gato ."),
    "run": dict(model=TRANSLATOR, view="run", run=0),
}


def type_and_time(page, text):
    """Type `text` into the box one character at a time; the page's times of each redraw."""
    rows = []
    for n in range(1, len(text) + 1):
        before = int(page.evaluate("document.body.dataset.renders"))
        t0 = time.perf_counter()
        page.evaluate(f"{{ const t = document.getElementById('text'); t.value = {text[:n]!r}; "
                      "t.dispatchEvent(new Event('input')) }")
        page.wait(f"Number(document.body.dataset.renders) > {before} && {READY}", every=0.002)
        wall = 1000 * (time.perf_counter() - t0)
        d = page.evaluate("({...document.body.dataset})")
        if d["ready"] == "yes":  # a half-typed word may be refused (e.g. too long): skip those
            rows.append((float(d["serverMs"]), float(d["roundtripMs"]), float(d["totalMs"]), wall))
    return rows


def summary(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"median {statistics.median(values):6.1f}  p90 {p90:6.1f}  max {values[-1]:6.1f}"


def direct_times(ckpts):
    """Each view's compute time called directly (no HTTP, no browser), median of 20."""
    cases = [("attention, translator", lambda: views.attention_view(ckpts[TRANSLATOR], TYPED[TRANSLATOR][0])),
             ("attention, LM", lambda: views.attention_view(ckpts[LM], TYPED[LM][0])),
             ("next token, LM", lambda: views.next_token_view(ckpts[LM], TYPED[LM][0])),
             ("translation (greedy)", lambda: views.translation_view(ckpts[TRANSLATOR],
                                                                     TYPED[TRANSLATOR][0])),
             ("translation (beam 4)", lambda: views.translation_view(ckpts[TRANSLATOR],
                                                                     TYPED[TRANSLATOR][0], "beam", 4))]
    for name, run in cases:
        run()
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            run()
            times.append(1000 * (time.perf_counter() - t0))
        print(f"  {name:<24} {statistics.median(times):6.1f} ms")


ENDPOINTS = [  # (label, method, path, body): one request of each kind the page sends
    ("page /", "GET", "/", None),
    ("script /static/app.js", "GET", "/static/app.js", None),
    ("models", "GET", "/api/models", None),
    ("source (decoding.py)", "GET", "/api/source?file=npformer/models/decoding.py", None),
    ("run, the whole log", "GET", "/api/run?run=0", None),
    ("run, a poll with nothing new", "GET", "/api/run?run=0&offset={end}&file_id={file_id}", None),
    ("tokens, BPE translator", "POST", "/api/tokens",
     {"model": BPE, "text": TYPED[TRANSLATOR][1]}),
    ("embeddings (projection kept)", "POST", "/api/embeddings", {"model": TRANSLATOR, "side": "source"}),
    ("neighbours", "POST", "/api/neighbours", {"model": TRANSLATOR, "side": "source", "id": 58}),
    ("attention, translator", "POST", "/api/attention",
     {"model": TRANSLATOR, "text": TYPED[TRANSLATOR][0]}),
    ("attention, LM", "POST", "/api/attention", {"model": LM, "text": TYPED[LM][0]}),
    ("attention, classifier", "POST", "/api/attention", {"model": CLASSIFIER, "text": TYPED[LM][1]}),
    ("next token, LM", "POST", "/api/next",
     {"model": LM, "text": TYPED[LM][0], "temperature": 0.8, "top_k": 10}),
    ("translate, greedy", "POST", "/api/translate",
     {"model": TRANSLATOR, "text": TYPED[TRANSLATOR][0]}),
    ("translate, beam 4", "POST", "/api/translate",
     {"model": TRANSLATOR, "text": TYPED[TRANSLATOR][0], "method": "beam", "beam_size": 4}),
    ("classify", "POST", "/api/classify", {"model": CLASSIFIER, "text": TYPED[LM][1]}),
    ("open (loads best.npz)", "POST", "/api/open", {"run": 0, "name": "best.npz"}),
]


def call(port, method, path, body):
    """(round trip ms, the server's own ms or None) of one request on a new connection."""
    head = {"Host": f"127.0.0.1:{port}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        head["Content-Type"] = "application/json"
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=data, headers=head)
    response = conn.getresponse()
    raw = response.read()
    trip = 1000 * (time.perf_counter() - t0)
    conn.close()
    assert response.status == 200, (path, response.status, raw[:200])
    kind = response.getheader("Content-Type", "")
    return trip, (json.loads(raw).get("ms") if "json" in kind else None), raw


def endpoint_times(port, repeats=30):
    """Each endpoint's round trip and server time, median and p90 of `repeats` requests."""
    _, _, raw = call(port, "GET", "/api/run?run=0", None)
    log = json.loads(raw)
    print(f"each endpoint from a Python client, {repeats} requests each (ms):")
    print(f"  {'endpoint':<30} {'round trip (median / p90)':>26} {'server (median / p90)':>24}")
    for label, method, path, body in ENDPOINTS:
        path = path.format(end=log["offset"], file_id=log["file_id"])
        call(port, method, path, body)  # once before timing (e.g. the projection is kept)
        trips, server = [], []
        for _ in range(repeats):
            trip, ms, _ = call(port, method, path, body)
            trips.append(trip)
            if ms is not None:
                server.append(ms)
        print(f"  {label:<30} {p50_p90(trips):>26} {p50_p90(server) if server else '-':>24}")


def p50_p90(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"{statistics.median(values):.1f} / {p90:.1f}"


def shrink(path):
    """Re-save a screenshot with a 128-colour palette (a UI has few colours): a few times smaller."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-shots", action="store_true", help="times only")
    parser.add_argument("--no-times", action="store_true", help="screenshots only")
    parser.add_argument("--endpoints-only", action="store_true",
                        help="only the endpoints' times (no browser)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"), help="screenshot folder")
    args = parser.parse_args()
    set_blas_threads(1)
    missing = [p for p in MODELS if not Path(p).exists()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: make them first (see this file's docstring)")
    ckpts = [load_checkpoint(p) for p in MODELS]
    explorer = Explorer(list(zip(MODELS, ckpts)), ["runs/toy"])
    explorer.warm_up()
    if not args.no_times and not args.endpoints_only:
        print("views computed directly (no HTTP), median of 20:")
        direct_times(ckpts)
    server = start_in_thread(explorer)
    try:
        if not args.no_times:
            endpoint_times(server.port)
        if args.endpoints_only:
            return
        with Browser(width=1280, height=900) as browser:
            timed = (("attention, translator", TRANSLATOR, "attention"),
                     ("attention, LM", LM, "attention"), ("next token, LM", LM, "next"),
                     ("translation, translator", TRANSLATOR, "translate"))
            if not args.no_times:
                print("typing in the page, one character at a time (ms):")
            for label, model, view in () if args.no_times else timed:
                page = browser.open(f"{server.url}?model={model}&view={view}&text=a")
                page.wait(READY)
                rows = [r for text in TYPED[model] for r in type_and_time(page, text)]
                server_ms, trip, total, wall = zip(*rows)
                print(f"  {label} ({len(rows)} redraws)\n"
                      f"    server compute   {summary(server_ms)}\n"
                      f"    round trip       {summary(trip)}\n"
                      f"    whole redraw     {summary(total)}\n"
                      f"    seen by the test {summary(wall)}")
            if not args.no_shots:
                from urllib.parse import urlencode

                out = Path(args.out)
                for name, state in SHOTS.items():
                    page = browser.open(f"{server.url}?{urlencode(state)}")
                    page.wait(READY)
                    time.sleep(0.3)  # the hover and neighbour requests that follow a redraw
                    height = min(page.evaluate("document.documentElement.scrollHeight"), 1150)
                    path = out / f"explore_{name}.png"
                    page.screenshot(path, {"x": 0, "y": 0, "width": 1280, "height": height})
                    shrink(path)
                    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
