"""`make demo` / `vestige demo`: the whole job on the embedded server, on a real corpus."""

from vestige_embed.demo.runner import run_demo

__all__ = ["run_demo"]
