"""What checking an input against a model's catalogue schema costs, per call.

Run ``python benchmarks/schema_check.py`` (or ``python -m benchmarks.schema_check``). It
compiles one realistic request schema (a FLUX LoRA model's: 13 fields, a list of LoRA
objects) and prints the median microseconds per ``Checker.check`` of valid ten-field
inputs, over many rounds, plus the cost of compiling and of reporting every problem of a
bad input. Timing uses ``time.perf_counter_ns`` on one core; nothing else runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wavespeed_async._core.schema import compile_schema

MODEL: Final = "wavespeed-ai/flux-dev-lora"

#: A request schema shaped like the catalogue's (``x-order-properties``, descriptions).
SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["prompt"],
    "x-order-properties": [  # the model page's order, not the properties' own
        "prompt",
        "image",
        "mask_image",
        "strength",
        "loras",
        "size",
        "num_inference_steps",
        "guidance_scale",
        "num_images",
        "seed",
        "output_format",
        "enable_base64_output",
        "enable_safety_checker",
    ],
    "properties": {
        "prompt": {"type": "string", "description": "What to draw.", "minLength": 1},
        "image": {"type": "string", "description": "URL of an input image.", "default": ""},
        "mask_image": {"type": "string", "description": "URL of a mask image."},
        "strength": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.8},
        "loras": {
            "type": "array",
            "maxItems": 4,
            "default": [],
            "items": {
                "type": "object",
                "required": ["path", "scale"],
                "properties": {
                    "path": {"type": "string", "description": "A LoRA's URL or owner/name."},
                    "scale": {"type": "number", "minimum": 0, "maximum": 4, "default": 1},
                },
            },
        },
        "size": {"type": "string", "default": "1024*1024", "pattern": r"^\d{3,4}\*\d{3,4}$"},
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 28},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": 20, "default": 3.5},
        "num_images": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
        "seed": {"type": "integer", "minimum": -1, "maximum": 9999999999, "default": -1},
        "output_format": {"type": "string", "enum": ["jpeg", "png", "webp"], "default": "jpeg"},
        "enable_base64_output": {"type": "boolean", "default": False},
        "enable_safety_checker": {"type": "boolean", "default": True},
    },
}


def inputs(n: int) -> list[dict[str, Any]]:
    """``n`` distinct valid inputs of ten fields each (one a list of two LoRAs)."""
    return [
        {
            "prompt": f"a watercolour fox, variation {i}",
            "image": f"https://example.com/in/{i}.png",
            "strength": 0.5 + (i % 5) / 10,
            "loras": [
                {"path": "owner/watercolour", "scale": 0.8},
                {"path": "owner/fox", "scale": 1.0 + (i % 3) / 2},
            ],
            "size": "1024*768",
            "num_inference_steps": 20 + i % 30,
            "guidance_scale": 3.5,
            "num_images": 1 + i % 4,
            "seed": i,
            "output_format": ("jpeg", "png", "webp")[i % 3],
        }
        for i in range(n)
    ]


def _median_us(fn: Any, args: list[Any], rounds: int) -> float:
    """The median over ``rounds`` of the mean time per call across ``args``, in us."""
    per_call: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for a in args:
            fn(a)
        per_call.append((time.perf_counter_ns() - start) / len(args) / 1000)
    return statistics.median(per_call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds (default 200)")
    parser.add_argument("--batch", type=int, default=100, help="inputs per round (default 100)")
    args = parser.parse_args(argv)

    start = time.perf_counter_ns()
    checker = compile_schema(MODEL, SCHEMA)
    compile_us = (time.perf_counter_ns() - start) / 1000
    assert checker.exact, checker.reason
    batch = inputs(args.batch)
    assert all(len(b) == 10 for b in batch)
    for body in batch:
        checker.check(body)  # warm up, and prove the inputs valid
    bad = dict(batch[0], guidence_scale=3, num_images=9, loras=[{"path": "x", "scale": 7}])
    assert len(checker.problems(bad)) == 3

    check_us = _median_us(checker.check, batch, args.rounds)
    problems_us = _median_us(checker.problems, [bad] * args.batch, max(args.rounds // 4, 1))
    print(f"schema check ({MODEL}, {len(checker.fields)} fields in the schema)")
    print(f"  compile once:                     {compile_us:8.1f} us")
    print(f"  check, valid 10-field input:      {check_us:8.2f} us median")
    print(f"  problems, 3 problems in an input: {problems_us:8.2f} us median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
