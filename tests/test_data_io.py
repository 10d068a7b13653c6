"""Loading user data: TSV and parallel files, error messages, skipping, splitting."""
import pytest

from npformer.data import DataError, load_parallel, load_tsv, save_tsv, split_pairs


def write(path, data):
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_load_tsv_reads_pairs_and_ignores_extra_columns(tmp_path):
    path = write(tmp_path / "pairs.tsv",
                 "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n"
                 "Hi.\tSalut !\n"
                 "  Run!  \t Cours !\r\n")
    result = load_tsv(path)
    assert result.pairs == [("Go.", "Va !"), ("Hi.", "Salut !"), ("Run!", "Cours !")]
    assert result.skipped == 0 and len(result) == 3


def test_load_tsv_skips_and_counts_empty_pairs(tmp_path):
    path = write(tmp_path / "pairs.tsv", "a\tb\n\n \t \n\tonly target\nonly source\t\nc\td\n\n")
    result = load_tsv(path)
    assert result.pairs == [("a", "b"), ("c", "d")]
    assert result.skipped == 5
    assert result.by_reason == {"blank line": 3, "empty source": 1, "empty target": 1}


def test_load_tsv_line_without_tab_names_file_and_line(tmp_path):
    path = write(tmp_path / "pairs.tsv", "a\tb\nc\td\nno tab here\n")
    with pytest.raises(DataError, match=r"pairs\.tsv:3: .*no tab") as info:
        load_tsv(path)
    assert isinstance(info.value, ValueError)


def test_load_tsv_other_columns(tmp_path):
    path = write(tmp_path / "tatoeba.tsv", "1\tHello\t77\tBonjour\n2\tBye\n")
    with pytest.raises(DataError, match=r"tatoeba\.tsv:2: .*at least 4 .*only 2 columns"):
        load_tsv(path, src_col=1, tgt_col=3)
    write(path, "1\tHello\t77\tBonjour\n")
    assert load_tsv(path, src_col=1, tgt_col=3).pairs == [("Hello", "Bonjour")]


def test_non_utf8_names_file_line_and_byte(tmp_path):
    path = write(tmp_path / "latin1.tsv", "ok\tfine\n".encode() + "caf\u00e9\tcoffee\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.tsv:2: not valid UTF-8 .* byte 3 of the line "
                                        r"\(byte 11 of the file\)"):
        load_tsv(path)
    src = write(tmp_path / "a.txt", "one\ntwo\n")
    tgt = write(tmp_path / "b.txt", b"eins\n\xff\xfe zwei\n")
    with pytest.raises(DataError, match=r"b\.txt:2: not valid UTF-8"):
        load_parallel(src, tgt)


def test_utf8_bom_and_unicode_line_separators(tmp_path):
    """A BOM is dropped; U+2028 inside a line must not split it (only \\n does)."""
    path = write(tmp_path / "bom.tsv", "\ufeffa\u2028b\tc\x85d\ne\tf\n")
    assert load_tsv(path).pairs == [("a\u2028b", "c\x85d"), ("e", "f")]


def test_load_parallel(tmp_path):
    src = write(tmp_path / "train.en", "A dog.\n\nA cat.\n  \nBirds.\n")
    tgt = write(tmp_path / "train.de", "Ein Hund.\nNichts.\nEine Katze.\n\nVögel.")
    result = load_parallel(src, tgt)
    assert result.pairs == [("A dog.", "Ein Hund."), ("A cat.", "Eine Katze."), ("Birds.", "Vögel.")]
    assert result.skipped == 2
    assert result.by_reason == {"empty source": 1, "blank line": 1}


def test_load_parallel_unequal_lengths(tmp_path):
    src = write(tmp_path / "x.en", "a\nb\nc\n")
    tgt = write(tmp_path / "x.de", "a\nb\n\n\n")  # trailing blank lines do not count
    with pytest.raises(DataError, match=r"x\.en has 3 lines but .*x\.de has 2.*line 3 of .*x\.en"):
        load_parallel(src, tgt)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.tsv: cannot open"):
        load_tsv(tmp_path / "nope.tsv")


def test_save_tsv_round_trip_and_rejects_tabs(tmp_path):
    pairs = [("Grüß dich.", "Hello."), ("日本語", "Japanese 😀")]
    path = tmp_path / "out.tsv"
    save_tsv(pairs, path)
    assert load_tsv(path).pairs == pairs
    with pytest.raises(DataError, match=r"pair 1: target contains a tab"):
        save_tsv([("a", "b"), ("c", "d\te")], path)


def test_split_pairs_is_deterministic_and_disjoint():
    pairs = [(f"s{k}", f"t{k}") for k in range(1000)]
    pairs += [("s7", "another translation"), ("s7", "a third one")]
    a = split_pairs(pairs, valid_frac=0.1, test_frac=0.05, seed=1)
    assert a == split_pairs(pairs, valid_frac=0.1, test_frac=0.05, seed=1)
    assert a != split_pairs(pairs, valid_frac=0.1, test_frac=0.05, seed=2)
    assert sorted(a["train"] + a["valid"] + a["test"]) == sorted(pairs)
    assert abs(len(a["valid"]) - 100) <= 2 and abs(len(a["test"]) - 50) <= 2
    sources = {k: {s for s, _ in v} for k, v in a.items()}
    assert not sources["train"] & sources["test"]
    assert not sources["train"] & sources["valid"]
    assert not sources["valid"] & sources["test"]


def test_split_pairs_rejects_bad_fractions():
    with pytest.raises(ValueError, match="valid_frac"):
        split_pairs([("a", "b")], valid_frac=1.5)
    with pytest.raises(ValueError, match="below 1"):
        split_pairs([("a", "b")], valid_frac=0.5, test_frac=0.5)
