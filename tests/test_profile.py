"""The step profiler: every kind present gets a row, the shares add up, the plot is a PNG."""
import pytest

from npformer.nn.config import ModelConfig
from npformer.tools.profile import KINDS, format_profile, op_kind, plot_profile, profile_step
from npformer.nn.tape import Record

# tiny shapes: the profile's structure is under test, not its numbers
CONFIG = ModelConfig(src_vocab_size=23, tgt_vocab_size=19, d_model=16, n_heads=2, d_ff=32,
                     n_encoder_layers=1, n_decoder_layers=2, max_len=16, dropout=0.1)
BATCH, SRC_LEN, TGT_LEN = 3, 5, 4
# The rows partition the step's wall time exactly ("other" is the remainder),
# so the shares sum to 1 up to float rounding.
SHARE_SUM_TOL = 1e-9


@pytest.fixture(scope="module")
def rows():
    return profile_step(CONFIG, BATCH, SRC_LEN, TGT_LEN, steps=2)


def test_rows_cover_every_kind_in_data_flow_order(rows):
    # pre-LN, dropout > 0, tied output: every kind occurs
    assert [r.kind for r in rows] == [*KINDS, "optimizer", "other"]


def test_a_kind_that_does_not_occur_gets_no_row():
    rows = profile_step(CONFIG.replace(dropout=0.0), BATCH, SRC_LEN, TGT_LEN, steps=1)
    kinds = [r.kind for r in rows]
    assert "dropout" not in kinds, kinds
    assert kinds == [k for k in (*KINDS, "optimizer", "other") if k != "dropout"]


def test_shares_sum_to_one(rows):
    total = sum(r.share for r in rows)
    assert abs(total - 1.0) < SHARE_SUM_TOL, f"shares sum to {total!r}"


def test_times_are_positive_and_consistent(rows):
    for r in rows:
        assert r.total_ms > 0 and r.share > 0, r
        assert r.total_ms == pytest.approx(r.forward_ms + r.backward_ms + r.outside_ms), r
        if r.kind in KINDS:  # measured by the tape: both directions ran
            assert r.forward_ms > 0 and r.backward_ms > 0 and r.outside_ms == 0, r
        else:  # measured around the tape
            assert r.forward_ms == 0 and r.backward_ms == 0 and r.outside_ms > 0, r


def test_attention_kind_follows_the_op_name():
    from npformer.nn.layers import cross_attention_backward, self_attention_backward

    assert op_kind(Record("decoder.1.self_attn", self_attention_backward, None, ())) \
        == "self-attention"
    assert op_kind(Record("decoder.1.cross_attn", cross_attention_backward, None, ())) \
        == "cross-attention"
    unknown = Record("my_op", lambda dy, cache: (dy,), None, ("x",))
    assert op_kind(unknown) == "my_op"


def test_format_lists_every_row_and_the_total(rows):
    text = format_profile(rows)
    for r in rows:
        assert r.kind in text, f"{r.kind!r} missing from\n{text}"
    assert text.splitlines()[-1].startswith("total"), text
    assert "100.0%" in text.splitlines()[-1], text


def test_plot_writes_a_png(rows, tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_profile(rows, tmp_path / "profile.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > 1000, f"{path}: only {len(data)} bytes"


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps"):
        profile_step(CONFIG, BATCH, SRC_LEN, TGT_LEN, steps=0)


def test_blas_threads_are_restored():
    from npformer.nn.threads import get_blas_threads

    before = get_blas_threads()
    profile_step(CONFIG, 2, 3, 3, steps=1, threads=2)
    assert get_blas_threads() == before
