"""The HTTP layer of `npformer explore`: the page's three files and its JSON endpoints.

Python's standard library only (http.server). What it guards against:
  - it binds to 127.0.0.1 unless told otherwise, and then answers only requests
    whose Host header names the loopback address it listens on (a web page
    elsewhere cannot reach it through DNS rebinding) and whose Origin, if sent,
    is the page itself (no cross-site POST);
  - it serves only its own files, read into memory at start, and JSON: no part of
    a request path is ever joined to a file-system path. The source panel shows
    a fixed list of files (the ones the views cite, sources.py), also read at start; a run's
    checkpoint is opened only by a name the server itself listed;
  - request bodies are JSON of at most MAX_BODY bytes (Content-Length required),
    texts at most views.MAX_TEXT_CHARS characters, numbers checked for type and
    range; a bad request gets a JSON error {"error": ...} and a 4xx status, a bug
    a 500 with a one-line reason, and the server keeps running;
  - each request runs in its own thread (several tabs at once); one model
    computes one request at a time (a lock per model); a slow client is dropped
    after TIMEOUT seconds.

Endpoints (GET unless marked):
  /                      the page (static/index.html, app.js, style.css)
  /api/models            the loaded models, watched runs and cited sources
  /api/source?file=F     the text of one cited file (F from /api/models)
  /api/run?run=I&offset=N&file_id=X   new log records and the checkpoints of run I
  POST /api/tokens, /api/attention, /api/next, /api/translate, /api/classify,
       /api/embeddings, /api/neighbours   one view (views.py) for {"model": i, ...}
  POST /api/open         load a checkpoint of a watched run {"run": i, "name": "best.npz"}
"""
import json
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..training.checkpoint import CheckpointError, load_checkpoint
from . import views
from .runs import Run
from .sources import load_sources

MAX_BODY = 16 * 1024  # bytes of a request body: a text of MAX_TEXT_CHARS and a few numbers
MAX_MODELS = 8  # checkpoints loaded at once (each run's "open" adds one)
TIMEOUT = 30  # seconds a connection may stay silent before it is closed
LOOPBACK = ("127.0.0.1", "localhost", "::1")

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = {
    # the page may load only its own files and call only its own endpoints
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ApiError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- files
def load_assets():
    """{url path: (bytes, content type)} of the page, from the package (no file access later)."""
    folder = resources.files("npformer.explore") / "static"
    return {url: ((folder / name).read_bytes(), kind) for url, (name, kind) in STATIC.items()}


# ---------------------------------------------------------------------------- state
class Loaded:
    """One model the page can show: its checkpoint, a label, a lock and a cache of projections."""

    def __init__(self, label, ckpt):
        self.label, self.ckpt = label, ckpt
        self.lock = threading.Lock()  # one computation at a time on this model
        self.projections = {}  # embedding side -> embedding_view (computed once)
        self.info = {"label": label, **views.describe(ckpt)}


class Explorer:
    """What the server holds: loaded models, watched runs, cited sources; answers API calls."""

    def __init__(self, models, runs=()):
        self.models = [Loaded(label, ckpt) for label, ckpt in models]
        self.runs = [Run(d) for d in runs]
        self.links, self.sources = load_sources()
        self.assets = load_assets()
        self._models_lock = threading.Lock()  # guards self.models (open adds to it)
        self._run_locks = [threading.Lock() for _ in self.runs]

    # ---------------------------------------------------------------- helpers
    def model(self, body):
        index = _integer(body, "model", 0, len(self.models) - 1)
        with self._models_lock:
            return self.models[index]

    def warm_up(self):
        """Run each view once, so that the first request does not wait for JIT compilation."""
        for m in self.models:
            for name in ("tokens", "attention", "next", "translate", "classify"):
                if name in VIEW_KINDS and m.info["kind"] not in VIEW_KINDS[name]:
                    continue
                self.post(name, {"model": self.models.index(m), "text": "the dog ."})
            for side in m.info["embedding_sides"]:  # the projections are computed once
                self.post("embeddings", {"model": self.models.index(m), "side": side})

    # ----------------------------------------------------------------- routes
    def get(self, route, query):
        if route == "/api/models":
            with self._models_lock:
                models = [m.info for m in self.models]
            return {"models": models, "runs": [str(r.directory) for r in self.runs],
                    "links": self.links, "view_kinds": VIEW_KINDS,
                    "limits": {"text": views.MAX_TEXT_CHARS, "beam": views.MAX_BEAM}}
        if route == "/api/source":
            name = _one(query, "file")
            if name not in self.sources:
                raise ApiError(404, f"no source {name[:80]!r}; the page lists the ones it shows")
            return {"file": name, "text": self.sources[name]}
        if route == "/api/run":
            if not self.runs:
                raise ApiError(404, "no run is watched (start with --run DIR)")
            index = _query_int(query, "run", 0, len(self.runs) - 1)
            offset = _query_int(query, "offset", 0, 1 << 50, default=0)
            file_id = query.get("file_id", [None])[0]
            with self._run_locks[index]:
                return self.runs[index].poll(offset, file_id)
        raise ApiError(404, f"no endpoint GET {route[:80]}")

    def post(self, route, body):
        if route not in POST_FIELDS:
            raise ApiError(404, f"no endpoint POST /api/{route[:80]}")
        unknown = sorted(set(body) - set(POST_FIELDS[route]))
        if unknown:
            raise ApiError(400, f"unknown field {unknown[0][:40]!r}; /api/{route} takes "
                                f"{', '.join(POST_FIELDS[route])}")
        if route == "open":
            return self.open(body)
        m = self.model(body)
        if route in VIEW_KINDS and m.info["kind"] not in VIEW_KINDS[route]:
            raise ApiError(400, f"/api/{route} needs a {' or '.join(VIEW_KINDS[route])}; model "
                                f"{body['model']} is a {m.info['kind']}")
        ckpt = m.ckpt
        with m.lock:
            if route == "tokens":
                return views.token_view(ckpt, _text(body))
            if route == "attention":
                return views.attention_view(ckpt, _text(body))
            if route == "next":
                vocab = ckpt.model.config.tgt_vocab_size
                return views.next_token_view(
                    ckpt, _text(body), temperature=_number(body, "temperature", 1e-3, 100, 1.0),
                    top_k=_integer(body, "top_k", 0, vocab, 0),
                    top_p=_number(body, "top_p", 1e-6, 1.0, 1.0),
                    seed=_integer(body, "seed", 0, (1 << 32) - 1, None))
            if route == "translate":
                method = body.get("method", "greedy")
                if method not in ("greedy", "beam"):
                    raise ApiError(400, "method must be greedy or beam")
                return views.translation_view(
                    ckpt, _text(body), method, _integer(body, "beam_size", 1, views.MAX_BEAM, 4),
                    _number(body, "length_penalty", 0.0, 10.0, 0.6))
            if route == "classify":
                return views.classification_view(ckpt, _text(body))
            side = body.get("side")
            if not isinstance(side, str) or side not in m.info["embedding_sides"]:
                raise ApiError(400, f"side must be one of {', '.join(m.info['embedding_sides'])}")
            if route == "embeddings":
                if side not in m.projections:
                    m.projections[side] = views.embedding_view(ckpt, side)
                return m.projections[side]
            return views.neighbours(ckpt, side, _integer(body, "id", 0, 1 << 31))

    def open(self, body):
        """Load a checkpoint of a watched run, by a name from the run's own listing."""
        index = _integer(body, "run", 0, len(self.runs) - 1)
        name = body.get("name")
        run = self.runs[index]
        listed = {p.name: p for p in run.directory.glob("*.npz")}
        if not isinstance(name, str) or name not in listed:
            raise ApiError(404, f"run {index} has no checkpoint {str(name)[:80]!r}")
        label = str(listed[name])
        try:
            ckpt = load_checkpoint(listed[name])
        except CheckpointError as err:
            raise ApiError(400, str(err)) from None
        step = ckpt.state.get("step")
        label = f"{label} (step {step})" if step is not None else label
        with self._models_lock:
            same = [i for i, m in enumerate(self.models) if m.label == label]
            if same:
                return {"model": same[0], "label": label}
            if len(self.models) >= MAX_MODELS:
                raise ApiError(400, f"{MAX_MODELS} models are open already; restart to open more")
            self.models.append(Loaded(label, ckpt))
            return {"model": len(self.models) - 1, "label": label}


# What each POST endpoint accepts, and which models each view is for.
POST_FIELDS = {
    "tokens": ("model", "text"),
    "attention": ("model", "text"),
    "next": ("model", "text", "temperature", "top_k", "top_p", "seed"),
    "translate": ("model", "text", "method", "beam_size", "length_penalty"),
    "classify": ("model", "text"),
    "embeddings": ("model", "side"),
    "neighbours": ("model", "side", "id"),
    "open": ("run", "name"),
}
VIEW_KINDS = {"next": ["language model"], "translate": ["translator"],
              "classify": ["classifier"]}


# --------------------------------------------------------------- request checking
def _text(body):
    text = body.get("text")
    if not isinstance(text, str):
        raise ApiError(400, "text must be a string")
    if len(text) > views.MAX_TEXT_CHARS:
        raise ApiError(400, f"text has {len(text)} characters; at most {views.MAX_TEXT_CHARS}")
    return text


def _integer(body, name, low, high, default=...):
    value = body.get(name, default)
    if value is ...:
        raise ApiError(400, f"{name} is required")
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be an integer in [{low}, {high}]")
    return value


def _number(body, name, low, high, default):
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a number in [{low:g}, {high:g}]")
    return float(value)


def _one(query, name):
    values = query.get(name)
    if not values or len(values) != 1:
        raise ApiError(400, f"give {name} once")
    return values[0]


def _query_int(query, name, low, high, default=...):
    if name not in query and default is not ...:
        return default
    text = _one(query, name)
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ApiError(400, f"{name} must be an integer in [{low}, {high}]")
    return int(text)


# ---------------------------------------------------------------------- the handler
class Handler(BaseHTTPRequestHandler):
    """One request: check where it comes from, route it, answer JSON or a static file."""

    server_version = "npformer-explore"
    sys_version = ""
    timeout = TIMEOUT  # socket timeout: a client that stops sending is dropped
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK wait)

    @property
    def explorer(self):
        return self.server.explorer

    def log_message(self, format, *args):  # the base class's signature
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status, payload, content_type="application/json; charset=utf-8"):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (bad request line, URL too long, ...) as JSON too."""
        self._error(code, message or HTTPStatus(code).phrase)

    def _error(self, status, message):
        self.close_connection = True
        self._send(status, {"error": message, "status": status})

    def _check_origin(self):
        """Refuse requests addressed to another name (DNS rebinding) or sent by another site."""
        host = self.headers.get("Host", "")
        if self.server.allowed_hosts is not None and host not in self.server.allowed_hosts:
            raise ApiError(403, f"Host {host[:80]!r} is not this server's address")
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            raise ApiError(403, f"requests from {origin[:80]!r} are not accepted")

    def _handle(self, method):
        started = time.perf_counter()
        try:
            self._check_origin()
            url = urlsplit(self.path)
            route = url.path
            if method == "GET" and route in self.explorer.assets:
                body, kind = self.explorer.assets[route]
                return self._send(200, body, kind)
            if method == "GET" and route.startswith("/api/"):
                try:
                    query = parse_qs(url.query, keep_blank_values=True, max_num_fields=8)
                except ValueError:
                    raise ApiError(400, "too many query fields") from None
                result = self.explorer.get(route, query)
            elif method == "POST" and route.startswith("/api/"):
                result = self.explorer.post(route[len("/api/"):], self._json_body())
            elif method in ("GET", "POST"):
                raise ApiError(404, f"nothing at {route[:80]}")
            else:
                raise ApiError(405, f"method {method[:20]} is not allowed (GET or POST)")
            result = dict(result)
            result["ms"] = round(1000 * (time.perf_counter() - started), 2)  # server time
            self._send(200, result)
        except ApiError as err:
            self._error(err.status, str(err))
        except views.ViewError as err:
            self._error(400, str(err))
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away; nothing to answer
        except Exception as err:  # a bug: say so in one line, keep serving
            where = traceback.extract_tb(err.__traceback__)[-1]
            line = f"{type(err).__name__}: {err} ({Path(where.filename).name}:{where.lineno})"
            print(f"npformer explore: error on {method} {self.path[:80]}: {line}",
                  file=sys.stderr)
            self._error(500, f"internal error: {line}")

    def _json_body(self):
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise ApiError(415, "send JSON (Content-Type: application/json)")
        length = self.headers.get("Content-Length")
        if length is None or self.headers.get("Transfer-Encoding"):
            raise ApiError(411, "send a Content-Length (no chunked bodies)")
        if not (length.isascii() and length.isdigit()):
            raise ApiError(400, "Content-Length must be a number")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"the body has {length} bytes; at most {MAX_BODY}")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as err:  # not UTF-8, not JSON, a 5000-digit number
            raise ApiError(400, f"the body is not JSON: {str(err)[:80]}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    # http.server calls do_<METHOD>; all go through _handle, which allows GET and POST
    # only (a CORS preflight, OPTIONS, gets a 405: no cross-site permission)
    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_OPTIONS(self):
        self._handle("OPTIONS")

    def do_PATCH(self):
        self._handle("PATCH")


class Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its Explorer and which Host headers it answers."""

    daemon_threads = True  # Ctrl-C does not wait for open connections
    allow_reuse_address = True

    def __init__(self, explorer, host="127.0.0.1", port=0, verbose=False):
        self.explorer, self.verbose = explorer, verbose
        if ":" in host:
            self.address_family = __import__("socket").AF_INET6
        super().__init__((host, port), Handler)
        self.port = self.server_address[1]
        if host in LOOPBACK:  # only the loopback names of this port (no DNS rebinding)
            self.allowed_hosts = {f"{name}:{self.port}" for name in
                                  ("127.0.0.1", "localhost", "[::1]")}
        else:
            self.allowed_hosts = None  # bound elsewhere on purpose (the CLI warned)

    @property
    def url(self):
        host = self.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"


def start_in_thread(explorer, host="127.0.0.1", port=0):
    """A running server on a background thread (for tests and scripts); stop with .shutdown()."""
    server = Server(explorer, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
