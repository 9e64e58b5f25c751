"""Griffe extension of the kdsnn docs: the docstrings' reStructuredText (roles such as
:class:`X`, :func:`~m.f`, ``double backquotes``, a paragraph ending in ``::`` before an
indented example) read as Markdown."""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const|ref):`~?([^`]+)`")
DOUBLE = re.compile(r"``([^`]+)``")
LITERAL = re.compile(r"(\S)::$", re.M)  # "text::" then an indented block: "text:"


def markdown(text: str) -> str:
    return LITERAL.sub(r"\1:", DOUBLE.sub(r"`\1`", ROLE.sub(r"`\1`", text)))


class RstRoles(griffe.Extension):
    def _fix(self, obj, seen: set) -> None:
        if id(obj) in seen or obj.is_alias:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
        for member in obj.members.values():
            self._fix(member, seen)

    def on_package(self, *, pkg, **kwargs) -> None:  # every object of a loaded package
        self._fix(pkg, set())
