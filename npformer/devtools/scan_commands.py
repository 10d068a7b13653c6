"""SCAN: navigation commands and the action sequences they mean (Lake & Baroni, 2018).

"jump twice and walk left" -> "I_JUMP I_JUMP I_TURN_LEFT I_WALK". A small, exact
grammar with long targets made of underscore_joined symbols: a test of how a
tokenizer and `max_len` treat a corpus unlike ordinary sentences (benchmarks/
user_corpus.py writes it to a .tsv file, as a user's own data).

The phrase-structure grammar (C is a command):

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> D opposite R | D around R | D | U        (D here is U or "turn")
    D -> U left | U right | turn left | turn right
    U -> walk | look | run | jump                 R -> left | right

and its meaning, [[.]] (x, x1, x2 phrases; u a primitive; r a direction):

    [[u]]              = I_U                  e.g. [[jump]] = I_JUMP
    [[turn r]]         = I_TURN_R
    [[u r]]            = [[turn r]] [[u]]
    [[turn opposite r]] = [[turn r]] [[turn r]]
    [[u opposite r]]   = [[turn opposite r]] [[u]]
    [[turn around r]]  = [[turn r]] x 4
    [[u around r]]     = ([[turn r]] [[u]]) x 4
    [[x twice]]        = [[x]] x 2,            [[x thrice]] = [[x]] x 3
    [[x1 and x2]]      = [[x1]] [[x2]],        [[x1 after x2]] = [[x2]] [[x1]]

The grammar makes 34 verb phrases, 102 single commands and 102 + 2 * 102**2 =
20,910 commands in all; the longest meaning has 48 actions ("jump around left
thrice and walk around right thrice").
"""
import random

PRIMITIVES = ("walk", "look", "run", "jump")
DIRECTIONS = ("left", "right")
N_COMMANDS = 20_910  # the size of the whole command space (module docstring)


def _turn(direction):
    """[[turn left]] = ["I_TURN_LEFT"]."""
    return [f"I_TURN_{direction.upper()}"]


def verb_phrases():
    """Every V of the grammar with its meaning: [(words, actions)], 34 of them."""
    phrases = [(u, [f"I_{u.upper()}"]) for u in PRIMITIVES]
    for r in DIRECTIONS:
        turn = _turn(r)
        phrases.append((f"turn {r}", turn))
        phrases.append((f"turn opposite {r}", turn * 2))
        phrases.append((f"turn around {r}", turn * 4))
        for u in PRIMITIVES:
            action = [f"I_{u.upper()}"]
            phrases.append((f"{u} {r}", turn + action))
            phrases.append((f"{u} opposite {r}", turn * 2 + action))
            phrases.append((f"{u} around {r}", (turn + action) * 4))
    return phrases


def single_commands():
    """Every S: a verb phrase, twice, or thrice; [(words, actions)], 102 of them."""
    out = []
    for words, actions in verb_phrases():
        out.append((words, actions))
        out.append((f"{words} twice", actions * 2))
        out.append((f"{words} thrice", actions * 3))
    return out


def scan_commands():
    """The whole command space: [(command, actions)] as strings, 20,910 pairs, fixed order.

    actions are space-separated symbols, e.g. ("walk after run", "I_RUN I_WALK").
    """
    singles = single_commands()
    pairs = [(words, actions) for words, actions in singles]
    for first, first_actions in singles:
        for second, second_actions in singles:
            pairs.append((f"{first} and {second}", first_actions + second_actions))
            pairs.append((f"{first} after {second}", second_actions + first_actions))
    return [(command, " ".join(actions)) for command, actions in pairs]


def make_command_corpus(n=None, seed=0):
    """A seeded shuffle of the command space: all of it (n=None) or the first n pairs."""
    pairs = scan_commands()
    random.Random(seed).shuffle(pairs)
    return pairs if n is None else pairs[:n]
