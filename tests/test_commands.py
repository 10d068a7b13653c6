"""The SCAN command generator: size, known meanings, and an independent interpreter."""
from npformer.devtools.scan_commands import N_COMMANDS, make_command_corpus, scan_commands


def interpret(command):
    """SCAN's meaning rules, written again from the paper, parsing the words right to left."""
    for joiner in (" and ", " after "):
        if joiner in command:
            first, second = command.split(joiner)
            a, b = interpret(first), interpret(second)
            return a + b if joiner == " and " else b + a
    words = command.split()
    repeat = {"twice": 2, "thrice": 3}.get(words[-1], 1)
    if repeat > 1:
        words = words[:-1]
    if words[-1] in ("left", "right"):
        turn = "I_TURN_" + words[-1].upper()
        act = [] if words[0] == "turn" else ["I_" + words[0].upper()]
        if words[1] == "around":
            phrase = ([turn] + act) * 4
        elif words[1] == "opposite":
            phrase = [turn, turn] + act
        else:
            phrase = [turn] + act
    else:
        phrase = ["I_" + words[0].upper()]
    return phrase * repeat


def test_whole_space_size_and_longest_target():
    pairs = scan_commands()
    assert len(pairs) == N_COMMANDS == 20_910
    assert len({c for c, _ in pairs}) == N_COMMANDS  # every command once
    assert max(len(a.split()) for _, a in pairs) == 48


def test_known_meanings():
    meaning = dict(scan_commands())
    assert len(meaning["jump around left twice"].split()) == 16
    assert meaning["turn opposite right"] == "I_TURN_RIGHT I_TURN_RIGHT"
    assert meaning["walk after run"] == "I_RUN I_WALK"
    assert meaning["jump twice and walk left"] == "I_JUMP I_JUMP I_TURN_LEFT I_WALK"
    assert meaning["look opposite left thrice"] == " ".join(
        ["I_TURN_LEFT", "I_TURN_LEFT", "I_LOOK"] * 3)
    assert meaning["turn around right"] == " ".join(["I_TURN_RIGHT"] * 4)
    assert "walk opposite" not in meaning and "turn" not in meaning  # not commands


def test_every_meaning_agrees_with_an_independent_interpreter():
    wrong = [(c, a) for c, a in scan_commands() if " ".join(interpret(c)) != a]
    assert not wrong, f"{len(wrong)} commands disagree, e.g. {wrong[:2]}"


def test_seeded_sample():
    assert make_command_corpus(50, seed=1) == make_command_corpus(50, seed=1)
    assert make_command_corpus(50, seed=1) != make_command_corpus(50, seed=2)
    assert sorted(make_command_corpus(seed=3)) == sorted(scan_commands())
