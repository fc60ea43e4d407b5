"""Compose's variable interpolation, applied to every string value of a
Compose file (never to keys). Pure.

    $$                  a literal $
    $VAR, ${VAR}        the value, or "" when unset (`unset` names it)
    ${VAR:-word}        word when VAR is unset or empty; ${VAR-word}: when unset
    ${VAR:?message}     an error when VAR is unset or empty; ${VAR?message}: when unset
    ${VAR:+word}        word when VAR is set and not empty; ${VAR+word}: when set

`word` may hold interpolations of its own (${A:-${B}}), as Compose allows.
"""
import re

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?\Z", re.DOTALL)


class InterpolationError(ValueError):
    pass


def interpolate_tree(value, env, unset=None):
    """Every string in a parsed YAML tree interpolated; keys stay as they are."""
    if isinstance(value, str):
        return interpolate(value, env, unset)
    if isinstance(value, dict):
        return {k: interpolate_tree(v, env, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_tree(v, env, unset) for v in value]
    return value


def interpolate(text, env, unset=None):
    """`text` with its variables replaced from `env`; names of unset
    variables that became "" are added to the set `unset`."""
    out, i = [], 0
    while True:
        j = text.find("$", i)
        if j < 0:
            return "".join(out) + text[i:]
        out.append(text[i:j])
        after = text[j + 1:j + 2]
        if after == "$":
            out.append("$")
            i = j + 2
        elif after == "{":
            end = _closing(text, j + 2)
            out.append(_braced(text[j + 2:end], env, unset))
            i = end + 1
        elif (m := NAME.match(text, j + 1)) is not None:
            out.append(_value(m.group(), env, unset))
            i = m.end()
        else:
            out.append("$")            # a lone $ (before a space, a digit, the end) stays
            i = j + 1


def _closing(text, start):
    """The index of the } that closes the ${ opened just before `start`."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"invalid interpolation format for {text!r}: a '${{' is never closed")


def _braced(body, env, unset):
    m = BRACED.match(body)
    if m is None:
        raise InterpolationError(f"invalid interpolation format: '${{{body}}}'")
    name, op, word = m.groups()
    value = env.get(name)
    if op is None:
        return _value(name, env, unset)
    missing = value is None or (op.startswith(":") and value == "")
    kind = op[-1]
    if kind == "-":
        return interpolate(word, env, unset) if missing else value
    if kind == "?":
        if missing:
            raise InterpolationError(f"required variable {name} is missing a value: "
                                     f"{interpolate(word, env, unset) or name}")
        return value
    return "" if missing else interpolate(word, env, unset)          # "+"


def _value(name, env, unset):
    value = env.get(name)
    if value is None:
        if unset is not None:
            unset.add(name)
        return ""
    return value
