"""Every config key with its default and its documentation, for ``mwc config``: the documentation is the comment
written beside the field in its section's module (mwc_dist/config.py lists where each lives), or the comment lines
right above it, read from the source, so the file and the command cannot disagree.

    mwc config                 # every section, as a YAML file of defaults with a comment per key
    mwc config train data      # some sections
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize

import yaml

from mwc_dist.config import Config


def field_docs(section_cls: type) -> dict[str, str]:
    """field name -> its comment: the one on its line(s), else the comment lines right above it; '' when none."""
    source = textwrap.dedent(inspect.getsource(section_cls))
    lines = source.splitlines()
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    docs = {}
    for node in ast.parse(source).body[0].body:
        if not isinstance(node, ast.AnnAssign):
            continue
        beside = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        above, n = [], node.lineno - 1
        while n in comments and lines[n - 1].lstrip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        docs[node.target.id] = " ".join(beside or above)
    return docs


def sections() -> dict[str, type]:
    """section name -> its dataclass, in the order of Config."""
    config = Config()
    return {f.name: type(getattr(config, f.name)) for f in dataclasses.fields(Config) if not f.metadata.get("internal")}


def describe(names: list[str] | None = None) -> str:
    """The sections ``names`` (all by default) as YAML: each key at its default, its documentation beside it."""
    defaults = Config().to_dict()
    known = sections()
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}: choose from {', '.join(known)}")
    out = []
    for name in names or list(known):
        cls = known[name]
        out.append(f"{name}:  # {(cls.__doc__ or '').strip().splitlines()[0]}")
        for key, doc in field_docs(cls).items():
            value = yaml.safe_dump(defaults[name][key], default_flow_style=True).strip().removesuffix("...").strip()
            line = f"  {key}: {value}" + (f"  # {doc}" if doc else "")
            if len(line) > 120:  # a long one as comment lines above its key
                out += [f"  # {part}" for part in textwrap.wrap(doc, 112)]
                line = f"  {key}: {value}"
            out.append(line)
    return "\n".join(out) + "\n"
