"""Rendering: from an original's bytes to preset renditions, with Pillow.

- ``presets``: what to render (no Pillow; configuration reads it);
- ``probe``: identify an upload from its headers, within limits (gateway);
- ``render``: decode once, resize, colour-convert, encode (render workers);
- ``pool`` and ``worker``: the render worker processes that bound a decode
  in time and memory;
- ``job``: one imaging job, from claim to complete.
"""
