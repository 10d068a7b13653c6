"""`npformer explore` without a browser: the views' numbers, the endpoints, every refusal.

The views (npformer/explore/views.py) must show what the rest of npformer computes:
each is compared with the function the CLI uses (attention_maps, greedy_decode,
beam_search, continue_text, predict). The server must answer only its own files and
JSON, refuse every bad request with a JSON error and keep running. The models are
the tiny ones of the `explore_runs` fixture (tests/conftest.py).
"""
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

from helpers import assert_close
from npformer.training.checkpoint import load_checkpoint
from npformer.cli import main
from npformer.models.decoding import (beam_search, continue_text, draw_tokens, filter_logits,
                                      greedy_decode, tempered)
from npformer.explore import server as explore_server
from npformer.explore import views
from npformer.explore.command import ExploreError, explore_command
from npformer.explore.runs import read_log
from npformer.explore.server import MAX_BODY, Explorer, start_in_thread
from npformer.explore.sources import load_sources
from npformer.tokenizers import BOS_ID, EOS_ID

SENTENCE = "the big dog sees a small cat ."
# The same float32 computation run twice (the view and the test): rounding only.
# assert_close's default atol, RTOL * max|ref|, bounds entries that are nearly 0.
RTOL = 1e-5


@pytest.fixture(scope="module")
def ckpts(explore_runs):
    return {name: load_checkpoint(run / "best.npz") for name, run in explore_runs.items()}


@pytest.fixture(scope="module")
def server(explore_runs, ckpts):
    explorer = Explorer([(str(explore_runs[n] / "best.npz"), ckpts[n])
                         for n in ("translator", "lm", "classifier")],
                        [explore_runs["translator"]])
    srv = start_in_thread(explorer)
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, headers=None, raw_body=None):
    """(status, parsed JSON or text, headers) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    head = {"Host": f"127.0.0.1:{srv.port}"}
    if body is not None:
        raw_body = json.dumps(body).encode()
        head["Content-Type"] = "application/json"
    head.update(headers or {})
    conn.request(method, path, body=raw_body, headers=head)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return (response.status, json.loads(data) if "json" in kind else data.decode("utf-8", "replace"),
            dict(response.getheaders()))


def raw(srv, data):
    """Send raw bytes, return the raw answer (for requests http.client refuses to send)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def refused(srv, status, method, path, body=None, headers=None, raw_body=None, needle=None):
    got, data, _ = request(srv, method, path, body, headers, raw_body)
    assert got == status, (method, path, got, data)
    assert isinstance(data, dict) and data["status"] == status and data["error"], data
    assert "\n" not in data["error"], data
    if needle:
        assert needle in data["error"], data
    return data


# ===================================================================== the views
def test_tokens_are_the_tokenizers_pieces_word_by_word(ckpts):
    ckpt = ckpts["translator"]
    tok = ckpt.src_tokenizer
    view = views.token_view(ckpt, SENTENCE)
    assert [p["id"] for w in view["words"] for p in w["pieces"]] == tok.encode(SENTENCE)
    assert "".join(w["text"] for w in view["words"]) == SENTENCE  # BPE chunks cover the text
    assert any(len(w["pieces"]) > 1 for w in view["words"]), "no word split into BPE parts"
    assert [p["id"] for p in view["model_reads"]] == tok.encode(SENTENCE) + [EOS_ID]
    lm = views.token_view(ckpts["lm"], "the old woman")
    assert [p["id"] for p in lm["model_reads"]] == [BOS_ID] + ckpts["lm"].src_tokenizer.encode(
        "the old woman")
    clf = views.token_view(ckpts["classifier"], "the dog")
    assert [p["id"] for p in clf["model_reads"]][::len(clf["model_reads"]) - 1] == [BOS_ID, EOS_ID]


def test_attention_is_what_attention_maps_computes(ckpts):
    ckpt = ckpts["translator"]
    model, tok = ckpt.model, ckpt.src_tokenizer
    view = views.attention_view(ckpt, SENTENCE)
    src = np.array([tok.encode(SENTENCE) + [EOS_ID]])
    out = greedy_decode(model, src)[0]
    expected = model.attention_maps(src, np.array([[BOS_ID] + out[: model.config.max_len - 1]]))
    assert [op["name"] for op in view["ops"]] == list(expected)
    for op in view["ops"]:
        ref = expected[op["name"]][0]  # (H,T,S)
        assert_close(op["name"], np.array(op["P"]), ref, RTOL)
        assert np.array(op["P"]).shape == (ref.shape[0], len(op["queries"]), len(op["keys"]))
        assert_close(f"{op['name']} row sums", np.array(op["P"]).sum(-1), np.ones(ref.shape[:2]),
                     1e-5, 1e-5)  # float32 softmax rows: sum to 1 within rounding
    kinds = {op["name"]: op["kind"] for op in view["ops"]}
    assert kinds["encoder.0.self_attn"] == "self" and kinds["decoder.0.self_attn"] == "causal"
    assert kinds["decoder.0.cross_attn"] == "cross"
    lm = views.attention_view(ckpts["lm"], "the old woman")
    P = np.array(lm["ops"][0]["P"])  # (H,T,T) causal: nothing above the diagonal
    assert np.all(np.triu(P, k=1) == 0.0) and P.shape[1] == len(lm["ops"][0]["queries"])


def test_head_distances_are_total_variation():
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    D = views.head_distances([a, b, a])
    # rows of a and b: TV 1 (disjoint) and 0 (equal), mean 0.5
    assert_close("head distances", D, np.array([[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]]), 0, 1e-15)


def test_next_token_greedy_is_generates_choice_and_filters_are_decodings(ckpts):
    ckpt = ckpts["lm"]
    tok = ckpt.src_tokenizer
    view = views.next_token_view(ckpt, "the old woman", temperature=0.7, top_k=5, top_p=0.9, seed=3)
    greedy = continue_text(ckpt.model, tok.encode("the old woman"), max_new_tokens=1)[0]
    chosen = greedy[0] if greedy else EOS_ID  # continue_text returns [] when EOS comes first
    if view["greedy"]["id"] != chosen:
        # generate decodes with the key/value cache, the view without: they round apart in
        # the last digits, so only a near-tie (a barely trained model) may order them apart
        p = {c["id"]: c["p_model"] for c in view["candidates"]}
        assert chosen in p and p[view["greedy"]["id"]] - p[chosen] < 1e-5, (view["greedy"], chosen)
    assert view["candidates"][0]["p_model"] == max(c["p_model"] for c in view["candidates"])
    p_sample = np.array([c["p_sample"] for c in view["candidates"]])
    assert 1 <= (p_sample > 0).sum() <= 5 and view["kept"] <= 5
    # the sampler's distribution and draw are decoding.sample's: PAD banned, tempered, filtered
    logits = ckpt.model.forward(np.array([[BOS_ID] + tok.encode("the old woman")]))[:, -1]
    logits[:, ckpt.model.config.pad_id] = -np.inf
    filtered = filter_logits(tempered(logits, 0.7), 5, 0.9)
    e = np.exp(filtered[0] - filtered[0].max())
    ref = e / e.sum()
    ids = [c["id"] for c in view["candidates"]]
    assert_close("sampler p", p_sample, ref[ids], RTOL)
    drawn = draw_tokens(filtered, np.random.default_rng(3))[0]
    assert view["sampled"]["id"] == drawn
    assert view["sampled"]["append"].startswith("the old woman ")
    assert views.next_token_view(ckpt, "")["greedy"]["id"] >= 0  # an empty prompt: BOS only


def test_translation_steps_are_greedy_and_beam_decoding(ckpts):
    ckpt = ckpts["translator"]
    model, tok = ckpt.model, ckpt.src_tokenizer
    src = np.array([tok.encode(SENTENCE) + [EOS_ID]])
    greedy = views.translation_view(ckpt, SENTENCE)
    out = greedy_decode(model, src)[0]
    assert greedy["output"] == [ckpt.tgt_tokenizer.id_to_token(i) for i in out]
    assert greedy["translation"] == ckpt.tgt_tokenizer.decode(out)
    assert len(greedy["steps"]) == min(len(out) + 1, model.config.max_len)
    for step in greedy["steps"]:
        top = step["alternatives"][0]["p"]
        # greedy takes the most likely token; the view's forward pass and the cached decoder
        # round differently in float32, so a near-tie may swap: allow that much
        assert step["token"]["p"] >= top - 1e-5, step
        for heads in step["cross"]:  # each head's row over the source sums to 1
            # (float32 softmax: the sum of a row is 1 within a few float32 roundings)
            assert_close("cross row sums", np.array(heads).sum(-1), np.ones(len(heads)), 1e-5)
    beam = views.translation_view(ckpt, SENTENCE, "beam", beam_size=3)
    assert beam["output"] == [ckpt.tgt_tokenizer.id_to_token(i)
                              for i in beam_search(model, src, beam_size=3)[0]]


def test_classification_is_predict_and_pooling(ckpts):
    ckpt = ckpts["classifier"]
    model, tok = ckpt.model, ckpt.src_tokenizer
    view = views.classification_view(ckpt, "the dog sees a cat .")
    ids = np.array([[BOS_ID] + tok.encode("the dog sees a cat .") + [EOS_ID]])
    ref = model.predict(ids)[0]
    assert_close("label probabilities", np.array(view["probs"]), ref, RTOL)
    assert view["best"] == ckpt.labels[int(ref.argmax())]
    # float64 weights that are 1 at one position (last pooling) or 1/n each (mean)
    assert_close("pool weights sum", np.array([sum(view["pool"])]), np.ones(1), 1e-12)
    looked = np.array(view["looked_at"])  # (H,T): a weighted mix of attention rows sums to 1
    assert_close("looked_at sums", looked.sum(-1), np.ones(len(looked)), 1e-5)  # float32 rows


def test_embedding_projection_is_pca(ckpts):
    ckpt = ckpts["translator"]
    view = views.embedding_view(ckpt, "source")
    W = ckpt.model.params["src_embed.W"].astype(np.float64)
    X = W - W.mean(0)
    eig = np.linalg.eigvalsh(X.T @ X)[::-1]  # variance along each principal direction
    # float64 SVD against float64 eigenvalues of X^T X (which squares the condition number:
    # agreement to ~1e-8, not to machine precision)
    assert_close("explained variance", np.array(view["explained"]), eig[:2] / eig.sum(), 1e-8)
    coords = np.stack([view["x"], view["y"]], 1)
    assert_close("coordinate variance", (coords ** 2).sum(0), eig[:2], 1e-8)
    assert len(view["tokens"]) == ckpt.src_tokenizer.vocab_size
    near = views.neighbours(ckpt, "source", 10)["neighbours"]
    cos = [n["cosine"] for n in near]
    assert cos == sorted(cos, reverse=True) and 10 not in [n["id"] for n in near]


def test_views_refuse_what_they_cannot_show(ckpts):
    with pytest.raises(views.ViewError, match="language model"):
        views.next_token_view(ckpts["translator"], "the dog")
    with pytest.raises(views.ViewError, match="reads at most"):
        views.attention_view(ckpts["translator"], "dog " * 200)
    with pytest.raises(views.ViewError, match="at most"):
        views.token_view(ckpts["lm"], "x" * (views.MAX_TEXT_CHARS + 1))
    with pytest.raises(views.ViewError, match="type some text"):
        views.attention_view(ckpts["lm"], "   ")
    cut = views.next_token_view(ckpts["lm"], "the dog " * 40)
    assert cut["cut"] > 0 and len(cut["prompt"]) == ckpts["lm"].model.config.max_len - 1


# ====================================================================== the run log
def test_the_log_is_read_as_it_grows(tmp_path):
    log = tmp_path / "log.jsonl"
    assert read_log(log)["exists"] is False
    log.write_text('{"type": "train", "step": 1, "loss": 2.0}\n{"type": "train", "st')
    first = read_log(log)
    assert [r["step"] for r in first["records"]] == [1]  # the half-written line waits
    with open(log, "a") as f:
        f.write('ep": 2, "loss": NaN}\n')
    second = read_log(log, first["offset"], first["file_id"])
    assert second["records"] == [{"type": "train", "step": 2, "loss": None}]  # NaN -> null
    assert not second["reset"]
    log.write_text('{"type": "train", "step": 1, "loss": 3.0}\n')  # rewritten (resume)
    third = read_log(log, second["offset"], second["file_id"])
    assert third["reset"] and [r["loss"] for r in third["records"]] == [3.0]


# ===================================================================== the endpoints
def test_the_page_and_its_files_are_served_with_a_strict_policy(server):
    status, html, headers = request(server, "GET", "/")
    assert status == 200 and "<script src=\"/static/app.js\"" in html
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "http" not in html.replace(f"127.0.0.1:{server.port}", "")  # no outside address
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "css")):
        status, text, headers = request(server, "GET", path)
        assert status == 200 and kind in headers["Content-Type"] and len(text) > 1000
        assert "https://" not in text and "http://" not in text.replace("http://www.w3.org", "")


def test_every_view_answers_json(server):
    models = request(server, "GET", "/api/models")[1]["models"]
    assert [m["kind"] for m in models] == ["translator", "language model", "classifier"]
    for name, model, extra in (("tokens", 0, {}), ("attention", 1, {}), ("attention", 2, {}),
                               ("next", 1, {"top_k": 3}), ("translate", 0, {"method": "beam"}),
                               ("classify", 2, {}), ("embeddings", 0, {"side": "target"}),
                               ("neighbours", 1, {"side": "tokens", "id": 5})):
        body = {"model": model, **extra} if name in ("embeddings", "neighbours") else \
            {"model": model, "text": "the dog sees a cat .", **extra}
        status, data, _ = request(server, "POST", f"/api/{name}", body)
        assert status == 200, (name, data)
        assert data["ms"] >= 0


TRAVERSALS = ["/../../../../etc/passwd", "/static/../server.py", "/static/../../setup.cfg",
              "/static/%2e%2e/%2e%2e/setup.cfg", "/static/app.js/../../views.py",
              "//etc/passwd", "/static//etc/passwd", "/static/..%2f..%2fviews.py",
              "/%2e%2e/%2e%2e/etc/passwd", "/static/app.js%00.html", "/index.html",
              "/static/", "/static/index.html/..", "/npformer/explore/views.py",
              "/api/../static/app.js", "/api/models/../../../etc/passwd"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_request_path_reaches_the_file_system(server, path):
    data = refused(server, 404, "GET", path)
    assert "root:" not in json.dumps(data) and "import" not in json.dumps(data)


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "npformer/../setup.cfg",
                                  "npformer/explore/../../setup.cfg", "npformer/cli/__init__.py",
                                  "docs/../README.md", ""])
def test_the_source_panel_shows_only_the_cited_files(server, name):
    refused(server, 404, "GET", f"/api/source?file={name}")


def test_every_cited_function_and_page_exists():
    links, texts = load_sources()  # a citation of a function that is gone raises LookupError
    missing = [x["file"] for view in links.values() for x in view if not x["available"]]
    assert not missing, f"cited but not found: {missing}"
    assert set(links) == {"tokens", "embeddings", "attention", "next", "translate", "classify",
                          "run"}


def test_the_source_panel_shows_a_cited_function(server):
    info = request(server, "GET", "/api/models")[1]
    link = next(x for x in info["links"]["attention"] if x["name"] == "Transformer.attention_maps")
    status, data, _ = request(server, "GET", f"/api/source?file={link['file']}")
    lines = data["text"].splitlines()
    assert status == 200 and "def attention_maps" in lines[link["first"] - 1]


def test_a_checkpoint_opens_only_by_a_name_the_server_listed(server, explore_runs):
    for name in ("../lm/best.npz", str(explore_runs["lm"] / "best.npz"), "log.jsonl",
                 "best.npz/../../lm/best.npz", 3):
        refused(server, 404, "POST", "/api/open", {"run": 0, "name": name})
    refused(server, 400, "POST", "/api/open", {"run": 5, "name": "best.npz"})
    status, data, _ = request(server, "POST", "/api/open", {"run": 0, "name": "last.npz"})
    assert status == 200 and "last.npz" in data["label"]
    again = request(server, "POST", "/api/open", {"run": 0, "name": "last.npz"})[1]
    assert again["model"] == data["model"]  # opened once
    status, data, _ = request(server, "GET", "/api/run?run=0")
    assert status == 200 and {c["name"] for c in data["checkpoints"]} == {"best.npz", "last.npz"}
    assert any(r["type"] == "valid" for r in data["records"])


def test_a_run_alone_and_a_broken_checkpoint_in_it(tmp_path, explore_runs):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text((explore_runs["lm"] / "log.jsonl").read_text())
    (run / "broken.npz").write_bytes(b"not a checkpoint")
    srv = start_in_thread(Explorer([], [run]))  # no model: only the run view
    try:
        status, data, _ = request(srv, "GET", "/api/run?run=0")
        assert status == 200 and data["records"]
        assert "error" in data["checkpoints"][0] and data["checkpoints"][0]["name"] == "broken.npz"
        refused(srv, 400, "POST", "/api/open", {"run": 0, "name": "broken.npz"},
                needle="broken.npz")
        refused(srv, 400, "POST", "/api/tokens", {"model": 0, "text": "a"}, needle="model")
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(explore_server.ApiError, match="no run is watched"):
        Explorer([], []).get("/api/run", {"run": ["0"]})


@pytest.mark.parametrize("host", ["evil.example:80", "evil.example", "127.0.0.1:1", "",
                                  "localhost.evil.example"])
def test_another_host_name_is_refused(server, host):
    # a page elsewhere that re-points its own name at 127.0.0.1 (DNS rebinding) sends its name
    refused(server, 403, "GET", "/api/models", headers={"Host": host})
    refused(server, 403, "GET", "/", headers={"Host": host})


def test_a_post_from_another_site_is_refused(server):
    refused(server, 403, "POST", "/api/tokens", {"model": 0, "text": "a"},
            headers={"Origin": "http://evil.example"}, needle="not accepted")
    ok = request(server, "POST", "/api/tokens", {"model": 0, "text": "a"},
                 headers={"Origin": f"http://127.0.0.1:{server.port}",
                          "Host": f"localhost:{server.port}"})
    assert ok[0] == 403  # the Origin must be the address the page was loaded from
    assert request(server, "POST", "/api/tokens", {"model": 0, "text": "a"},
                   headers={"Origin": f"http://127.0.0.1:{server.port}"})[0] == 200


BAD_BODIES = [  # (endpoint, body, what the error names)
    ("tokens", {"model": 0}, "text"),
    ("tokens", {"model": 0, "text": 5}, "text"),
    ("tokens", {"model": "0", "text": "a"}, "model"),
    ("tokens", {"model": True, "text": "a"}, "model"),
    ("tokens", {"model": 9, "text": "a"}, "model"),
    ("tokens", {"model": -1, "text": "a"}, "model"),
    ("tokens", {"text": "a"}, "model"),
    ("tokens", {"model": 0, "text": "a", "extra": 1}, "unknown field"),
    ("tokens", {"model": 0, "text": "x" * 1001}, "at most"),
    ("attention", {"model": 0, "text": "dog " * 200}, "reads at most"),
    ("attention", {"model": 0, "text": "  "}, "type some text"),
    ("next", {"model": 0, "text": "a"}, "language model"),
    ("next", {"model": 1, "text": "a", "temperature": 0}, "temperature"),
    ("next", {"model": 1, "text": "a", "temperature": "hot"}, "temperature"),
    ("next", {"model": 1, "text": "a", "top_k": -1}, "top_k"),
    ("next", {"model": 1, "text": "a", "top_k": 1.5}, "top_k"),
    ("next", {"model": 1, "text": "a", "top_p": 0}, "top_p"),
    ("next", {"model": 1, "text": "a", "top_p": 1.5}, "top_p"),
    ("next", {"model": 1, "text": "a", "seed": -2}, "seed"),
    ("translate", {"model": 1, "text": "a"}, "translator"),
    ("translate", {"model": 0, "text": "a", "method": "sample"}, "method"),
    ("translate", {"model": 0, "text": "a", "method": "beam", "beam_size": 99}, "beam_size"),
    ("translate", {"model": 0, "text": "a", "length_penalty": -1}, "length_penalty"),
    ("classify", {"model": 0, "text": "a"}, "classifier"),
    ("embeddings", {"model": 0, "side": "../../etc"}, "side"),
    ("embeddings", {"model": 1}, "side"),
    ("neighbours", {"model": 1, "side": "tokens", "id": 10 ** 6}, "token id"),
    ("neighbours", {"model": 1, "side": "tokens", "id": "3"}, "id"),
]


@pytest.mark.parametrize("route,body,needle", BAD_BODIES)
def test_a_bad_field_is_a_json_error(server, route, body, needle):
    refused(server, 400, "POST", f"/api/{route}", body, needle=needle)


def test_bad_requests_get_json_errors_and_the_server_keeps_running(server):
    json_type = {"Content-Type": "application/json"}
    refused(server, 413, "POST", "/api/tokens", raw_body=b"{" + b" " * MAX_BODY + b"}",
            headers=json_type)
    refused(server, 415, "POST", "/api/tokens", raw_body=b'{"model": 0, "text": "a"}',
            headers={"Content-Type": "application/x-www-form-urlencoded"})
    refused(server, 400, "POST", "/api/tokens", raw_body=b"{not json", headers=json_type)
    refused(server, 400, "POST", "/api/tokens", raw_body=b"[1, 2]", headers=json_type)
    refused(server, 400, "POST", "/api/tokens", raw_body=b"\xff\xfe", headers=json_type)
    refused(server, 400, "POST", "/api/tokens", raw_body=b"[" * 5000 + b"]" * 5000,
            headers=json_type)
    refused(server, 400, "POST", "/api/next", raw_body=b'{"model": 1, "text": "a", '
            b'"temperature": NaN}', headers=json_type, needle="temperature")
    refused(server, 400, "POST", "/api/tokens", raw_body=b'{"model": 1' + b"0" * 5000 + b"}",
            headers=json_type, needle="not JSON")
    refused(server, 400, "GET", "/api/run?" + "a=1&" * 20, needle="too many")
    refused(server, 404, "POST", "/api/nothing", {"model": 0})
    refused(server, 404, "GET", "/api/nothing")
    refused(server, 405, "PUT", "/api/tokens", {"model": 0, "text": "a"})
    refused(server, 405, "DELETE", "/")
    refused(server, 405, "OPTIONS", "/api/tokens")
    refused(server, 400, "GET", "/api/run?run=x")
    refused(server, 400, "GET", "/api/run?run=0&offset=-1")
    refused(server, 400, "GET", "/api/run?run=0&run=0")
    # no Content-Length, a chunked body, a Content-Length that is not a number
    answer = raw(server, f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                         "Content-Type: application/json\r\n\r\n".encode())
    assert answer.startswith("HTTP/1.0 411") and '"error"' in answer
    answer = raw(server, f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 1e3\r\n\r\n{}".encode())
    assert answer.startswith("HTTP/1.0 400") and '"error"' in answer
    # http.server's own refusals are JSON too: a URL too long, a garbled request line
    answer = raw(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith("HTTP/1.0 414") and '"error"' in answer
    answer = raw(server, b"GARBAGE\r\n\r\n")  # one word: HTTP/0.9, answered with no status line
    assert json.loads(answer[answer.index("{"):])["status"] == 400
    answer = raw(server, b"GET http://evil.example/etc/passwd HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert answer.startswith("HTTP/1.0 403") and "root:" not in answer
    assert request(server, "GET", "/api/models")[0] == 200


def test_a_bug_is_a_500_with_one_line_and_the_server_keeps_running(server, monkeypatch):
    def broken(ckpt, text):
        raise RuntimeError("a bug")

    monkeypatch.setattr(explore_server.views, "token_view", broken)
    data = refused(server, 500, "POST", "/api/tokens", {"model": 0, "text": "a"}, needle="a bug")
    assert "Traceback" not in data["error"]
    monkeypatch.undo()
    assert request(server, "POST", "/api/tokens", {"model": 0, "text": "a"})[0] == 200


def test_several_clients_at_once_get_the_same_answers(server):
    # several tabs: threads post to two models at once while a silent connection stays open
    silent = socket.create_connection(("127.0.0.1", server.port))
    expected = {m: request(server, "POST", "/api/attention", {"model": m, "text": SENTENCE})[1]
                for m in (0, 1)}
    results, errors = [], []

    def client(m):
        try:
            for _ in range(4):
                status, data, _ = request(server, "POST", "/api/attention",
                                          {"model": m, "text": SENTENCE})
                results.append((m, status, data))
        except Exception as err:  # reported below, with the others
            errors.append(err)

    threads = [threading.Thread(target=client, args=(i % 2,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    silent.close()
    assert not errors, errors
    assert len(results) == 24
    for m, status, data in results:
        assert status == 200
        for op, ref in zip(data["ops"], expected[m]["ops"]):
            # the same computation again: equal up to rounding (a BLAS may round differently
            # with another memory alignment), never mixed up with another request's numbers
            ref_P = np.array(ref["P"])
            assert_close(op["name"], np.array(op["P"]), ref_P, RTOL)


# ====================================================================== the command
def one_line_error(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_a_model_that_does_not_load_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    one_line_error(capsys, main(["explore", "--model", str(tmp_path / "none.npz")]),
                   "no such checkpoint")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip at all")
    one_line_error(capsys, main(["explore", "--model", str(bad)]), "bad.npz")
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, main(["explore", "--run", str(tmp_path / "file")]), "not a directory")


def test_with_nothing_to_show_it_says_how_to_make_a_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["explore"])
    err = capsys.readouterr().err
    assert code == 2 and "npformer train" in err and "npformer pretrain" in err, err
    assert "Traceback" not in err


def test_another_address_warns_and_a_busy_port_is_one_line(explore_runs):
    lines = []
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ExploreError, match=f"port {port} is in use"):
            explore_command([str(explore_runs["lm"] / "best.npz")], [], "0.0.0.0", port, [],
                            log=lines.append)
    assert any(line.startswith("warning: listening on 0.0.0.0") for line in lines), lines


def test_ctrl_c_stops_the_server_cleanly(explore_runs):
    # Ctrl-C in a terminal sends SIGINT; a test run started in the background may have
    # inherited SIGINT ignored, so the child first takes Python's default handler back
    start = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from npformer.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", start, "explore", "--port", "0",
                             "--model", str(explore_runs["lm"] / "best.npz")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the server is ready
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)  # no --host: loopback only
        assert url, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(url.group(0) + "api/models", timeout=30) as answer:
            assert answer.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err, err
    assert "warning" not in err, err  # no --host: the loopback address, said without a warning
