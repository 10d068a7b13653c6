"""Which of the learner's other answers an answer calls, and what to say when one fails.

An attention backward that is right but calls the learner's broken
softmax_backward fails, and its own hints would send the learner to the wrong
function. So when an exercise fails, the checker looks for calls to the
functions of other exercises (softmax_forward, linear_backward, ...) in the
learner's code: the names a function's code uses (`co_names`, nested functions
included) that its module defines as a function of the learner's (not one of
npformer's). Those exercises are graded first, with just the functions called;
if one fails, the report says "fix softmax first".
"""
import types


def called_names(function):
    """The global and attribute names used by `function`'s code, nested code included."""
    code = getattr(function, "__code__", None)
    if code is None:
        return set()
    names, stack = set(), [code]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    for cell in getattr(function, "__closure__", None) or ():  # helpers passed in a closure
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, types.FunctionType):
            names.add(value.__name__)
    return names


def is_learners(function):
    """A function the learner wrote (not npformer's model answers or library code)."""
    module = getattr(function, "__module__", None) or ""
    return callable(function) and not module.startswith("npformer")


def dependencies(exercise, functions, registry):
    """[(other exercise, {role: learner function})] that `functions` call, in course order."""
    found = {}
    for function in functions.values():
        if function is None or not is_learners(function):
            continue
        used, scope = called_names(function), getattr(function, "__globals__", {})
        for other in registry.values():
            if other.name == exercise.name:
                continue
            for role, name in zip(other.roles, other.functions):
                target = scope.get(name)
                if name in used and target is not None and is_learners(target):
                    found.setdefault(other.name, {})[role] = target
    return [(other, found[other.name]) for other in registry.values() if other.name in found]


def blocking_message(exercise, functions, failing):
    """The hint when answers this exercise calls fail: name them, fix them first."""
    parts = []
    for other, roles, result in failing:
        if result.blocked_by:  # it fails because of something deeper: send the learner there
            root = result.blocked_by[0]
            parts.append(f"your {other.name} answer calls your {root} answer, which fails its "
                         f"own check: fix {root} first, then {other.name}, then "
                         f"{exercise.name}")
            continue
        names = ", ".join(fn for role, fn in zip(other.roles, other.functions) if role in roles)
        parts.append(f"your {other.name} answer ({names}) fails its own check: fix "
                     f"{other.name} before {exercise.name}, which calls it "
                     f"(check(\"{other.name}\", ...) shows why)")
    return "; ".join(parts) + "."
