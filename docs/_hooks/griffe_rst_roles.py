"""Griffe extension of the kdsnn docs: the docstrings' reStructuredText roles
(:class:`X`, :func:`~m.f`, :data:`X`, ...) and ``double backquotes`` read as Markdown code."""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const|ref):`~?([^`]+)`")
DOUBLE = re.compile(r"``([^`]+)``")


class RstRoles(griffe.Extension):
    def on_object(self, *, obj, **kwargs) -> None:  # griffe 2: every object once loaded
        if obj.docstring is not None:
            text = ROLE.sub(r"`\1`", obj.docstring.value)
            obj.docstring.value = DOUBLE.sub(r"`\1`", text)
