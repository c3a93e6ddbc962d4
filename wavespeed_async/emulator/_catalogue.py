"""The models the emulator runs: their JSON Schemas, kinds and price rules, as data.

``GET /api/v3/models`` serves this catalogue; submits are checked against each model's
``request_schema`` (``_schema``); prices come from each model's rule (``_billing``). The two
FLUX.1 Kontext schemas follow WaveSpeed's product pages (field names, types, ranges, enums,
defaults, required fields); the others are realistic stand-ins for the kinds of model the
API also runs: text-to-video, LoRA text-to-image and an image upscaler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

__all__ = ["CATALOGUE", "EmulatedModel", "catalogue_entry"]

#: How a model's price grows with its inputs: per output image (``num_images``), per second
#: of output video (``duration``), or a flat price per task.
PriceRule = Literal["per_image", "per_second", "flat"]


@dataclass(frozen=True)
class EmulatedModel:
    """One model of the catalogue: what ``GET /api/v3/models`` lists, and how it runs.

    ``unit_price`` is in USD per image, per second of video or per task (``pricing``);
    it is also the catalogue's ``base_price``. ``output`` is the kind of file each output
    is (a PNG or an MP4). ``request_schema`` is the JSON Schema of the inputs (see
    ``docs/emulator.md`` for the keywords the emulator enforces).
    """

    model_id: str
    name: str
    description: str
    type: str
    request_schema: Mapping[str, Any]
    unit_price: Decimal
    pricing: PriceRule = "per_image"
    output: Literal["image", "video"] = "image"
    sort_order: int = 0
    properties: Mapping[str, Mapping[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        price: object = self.unit_price
        if not isinstance(price, Decimal):
            # A float price is taken as written (0.025, not 0.02500000000000000138...).
            object.__setattr__(self, "unit_price", Decimal(str(price)))
        if not (self.unit_price.is_finite() and self.unit_price >= 0):
            raise ValueError(f"unit_price: {self.unit_price}; allowed: a finite amount >= 0")
        if self.pricing not in ("per_image", "per_second", "flat"):
            raise ValueError(
                f"pricing: {self.pricing!r}; allowed: 'per_image', 'per_second' or 'flat'"
            )
        props = self.request_schema.get("properties")
        if not isinstance(props, Mapping):
            raise TypeError(f"request_schema of {self.model_id}: needs a 'properties' object")
        object.__setattr__(self, "properties", props)

    def default(self, name: str) -> Any:
        """The schema's default of input ``name`` (``None`` when it has none)."""
        prop = self.properties.get(name)
        return prop.get("default") if prop is not None else None

    def formula(self, unit_price: Decimal) -> str:
        """The catalogue's price formula (JSONata over the inputs; empty for a flat price)."""
        if self.pricing == "per_image":
            return f"{unit_price} * ($exists(num_images) ? num_images : 1)"
        if self.pricing == "per_second":
            # Without ``duration`` this is undefined, and the API falls back to base_price.
            return f"{unit_price} * duration"
        return ""


def catalogue_entry(model: EmulatedModel, unit_price: Decimal, server: str) -> dict[str, Any]:
    """``model`` as ``GET /api/v3/models`` lists it; ``server`` is the API's base URL."""
    return {
        "model_id": model.model_id,
        "name": model.name,
        "description": model.description,
        "type": model.type,
        "base_price": unit_price,
        "sort_order": model.sort_order,
        "formula": model.formula(unit_price),
        "api_schema": {
            "api_schemas": [
                {
                    "type": "model_run",
                    "method": "POST",
                    "server": server,
                    "api_path": f"/api/v3/{model.model_id}",
                    "request_schema": model.request_schema,
                }
            ]
        },
    }


def _schema(properties: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "x-order-properties": list(properties),
    }


_SEED_TEXT: Final = (
    "The same seed and the same prompt given to the same version of the model will output "
    "the same image every time."
)
_CFG_TEXT: Final = (
    "The CFG (Classifier Free Guidance) scale is a measure of how close you want the model "
    "to stick to your prompt when looking for a related image to show you."
)
_BASE64_TEXT: Final = (
    "If enabled, the output will be encoded into a BASE64 string instead of a URL."
)
_NUM_IMAGES: Final = {
    "type": "integer",
    "description": "The number of images to generate.",
    "default": 1,
    "minimum": 1,
    "maximum": 4,
}

FLUX_KONTEXT_DEV: Final = EmulatedModel(
    model_id="wavespeed-ai/flux-kontext-dev",
    name="FLUX.1 Kontext [dev]",
    description=(
        "FLUX.1 Kontext [dev] is a development version of the state-of-the-art image editing "
        "model that lets you edit images using text prompts."
    ),
    type="image-to-image",
    unit_price=Decimal("0.025"),
    sort_order=10,
    request_schema=_schema(
        {
            "prompt": {
                "type": "string",
                "description": "The prompt to generate an image from.",
                "default": "Change the car color to red.",
            },
            "image": {
                "type": "string",
                "description": "The image to generate an image from.",
                "default": (
                    "https://d2g64w682n9w0w.cloudfront.net/media/images/"
                    "1750940187685254815_W4yPaBQU.jpg"
                ),
            },
            "size": {
                "type": "string",
                "description": "The size of the generated image.",
                "default": "1024*1024",
                "minimum": 512,
                "maximum": 1536,
            },
            "num_inference_steps": {
                "type": "integer",
                "description": "The number of inference steps to perform.",
                "default": 28,
                "minimum": 1,
                "maximum": 50,
            },
            "guidance_scale": {
                "type": "number",
                "description": _CFG_TEXT,
                "default": 2.5,
                "minimum": 1.0,
                "maximum": 20.0,
            },
            "num_images": dict(_NUM_IMAGES),
            "seed": {
                "type": "integer",
                "description": _SEED_TEXT,
                "default": -1,
                "minimum": -1,
                "maximum": 9_999_999_999,
            },
            "enable_base64_output": {
                "type": "boolean",
                "description": _BASE64_TEXT,
                "default": False,
            },
            "enable_safety_checker": {
                "type": "boolean",
                "description": "If set to true, the safety checker will be enabled.",
                "default": True,
            },
        },
        ["prompt"],
    ),
)

#: The aspect ratios FLUX.1 Kontext [pro] draws (the product page lists no range).
KONTEXT_ASPECT_RATIOS: Final = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")

FLUX_KONTEXT_PRO_T2I: Final = EmulatedModel(
    model_id="wavespeed-ai/flux-kontext-pro/text-to-image",
    name="FLUX.1 Kontext [pro] Text to Image",
    description=(
        "The FLUX.1 Kontext [pro] text-to-image delivers state-of-the-art image generation "
        "results with unprecedented prompt following, photorealistic rendering, and "
        "flawless typography."
    ),
    type="text-to-image",
    unit_price=Decimal("0.04"),
    sort_order=20,
    request_schema=_schema(
        {
            "prompt": {
                "type": "string",
                "description": "The prompt to generate an image from.",
                "default": (
                    "A grand steampunk airship soaring through the sky, with intricate brass "
                    "and copper details, large propellers spinning, and a massive balloon "
                    "filled with hot air. The airship is adorned with Victorian-style "
                    "architecture, featuring ornate railings and decorative elements. The sky "
                    "is a brilliant blue with fluffy white clouds, and the airship casts a "
                    "shadow on the landscape below. The scene conveys a sense of adventure "
                    "and exploration"
                ),
            },
            "aspect_ratio": {
                "type": "string",
                "description": "The aspect ratio of the generated image.",
                "default": "1:1",
                "enum": list(KONTEXT_ASPECT_RATIOS),
            },
            "num_images": dict(_NUM_IMAGES),
            "seed": {
                "type": "integer",
                "description": _SEED_TEXT,
                "minimum": -1,
                "maximum": 9_999_999_999,
            },
            "guidance_scale": {
                "type": "number",
                "description": _CFG_TEXT,
                "default": 3.5,
                "minimum": 1.0,
                "maximum": 10.0,
            },
            "safety_tolerance": {
                "type": "string",
                "description": (
                    "The safety tolerance level for the generated image. 1 being the most "
                    "strict and 5 being the most permissive."
                ),
                "default": "2",
                "enum": ["1", "2", "3", "4", "5"],
            },
        },
        ["prompt"],
    ),
)

WAN_T2V_480P: Final = EmulatedModel(
    model_id="wavespeed-ai/wan-2.2/t2v-480p",
    name="Wan 2.2 Text to Video 480p",
    description="Generates a 480p video of 5 or 8 seconds from a text prompt.",
    type="text-to-video",
    unit_price=Decimal("0.03"),
    pricing="per_second",
    output="video",
    sort_order=30,
    request_schema=_schema(
        {
            "prompt": {"type": "string", "description": "The prompt to generate a video from."},
            "negative_prompt": {
                "type": "string",
                "description": "What the video should not show.",
                "default": "",
                "maxLength": 2000,
            },
            "size": {
                "type": "string",
                "description": "The size of the generated video (width*height).",
                "default": "832*480",
                "enum": ["832*480", "480*832"],
            },
            "duration": {
                "type": "integer",
                "description": "The duration of the generated video in seconds.",
                "default": 5,
                "enum": [5, 8],
            },
            "seed": {
                "type": "integer",
                "description": "The random seed; -1 picks one.",
                "default": -1,
                "minimum": -1,
                "maximum": 2_147_483_647,
            },
        },
        ["prompt"],
    ),
)

FLUX_DEV_LORA: Final = EmulatedModel(
    model_id="wavespeed-ai/flux-dev-lora",
    name="FLUX.1 [dev] LoRA",
    description="FLUX.1 [dev] text-to-image with up to 3 LoRA adapters.",
    type="text-to-image",
    unit_price=Decimal("0.02"),
    sort_order=40,
    request_schema=_schema(
        {
            "prompt": {"type": "string", "description": "The prompt to generate an image from."},
            "loras": {
                "type": "array",
                "description": "The LoRAs to apply, each a path (owner/name or URL) and a scale.",
                "default": [],
                "maxItems": 3,
                "x-ui-component": "loras",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {
                            "type": "string",
                            "description": "The LoRA: 'owner/name' or a URL of its weights.",
                            "minLength": 1,
                        },
                        "scale": {
                            "type": "number",
                            "description": "How strongly the LoRA applies.",
                            "default": 1.0,
                            "minimum": 0.0,
                            "maximum": 4.0,
                        },
                    },
                    "required": ["path"],
                },
            },
            "size": {
                "type": "string",
                "description": "The size of the generated image.",
                "default": "1024*1024",
                "minimum": 512,
                "maximum": 1536,
            },
            "num_inference_steps": {
                "type": "integer",
                "description": "The number of inference steps to perform.",
                "default": 28,
                "minimum": 1,
                "maximum": 50,
            },
            "guidance_scale": {
                "type": "number",
                "description": _CFG_TEXT,
                "default": 3.5,
                "minimum": 0.0,
                "maximum": 20.0,
            },
            "num_images": dict(_NUM_IMAGES),
            "seed": {
                "type": "integer",
                "description": _SEED_TEXT,
                "default": -1,
                "minimum": -1,
                "maximum": 2_147_483_647,
            },
            "enable_base64_output": {
                "type": "boolean",
                "description": _BASE64_TEXT,
                "default": False,
            },
            "enable_safety_checker": {
                "type": "boolean",
                "description": "If set to true, the safety checker will be enabled.",
                "default": True,
            },
        },
        ["prompt"],
    ),
)

#: Output size of each upscaler ``target_resolution`` (16:9; capped at 4096 per side when
#: rendered, so ``8k`` gives 4096*2304).
UPSCALE_SIZES: Final[Mapping[str, tuple[int, int]]] = {
    "2k": (2560, 1440),
    "4k": (3840, 2160),
    "8k": (7680, 4320),
}

IMAGE_UPSCALER: Final = EmulatedModel(
    model_id="wavespeed-ai/image-upscaler",
    name="Image Upscaler",
    description="Upscales an image to 2K, 4K or 8K.",
    type="image-upscaler",
    unit_price=Decimal("0.01"),
    pricing="flat",
    sort_order=50,
    request_schema=_schema(
        {
            "image": {"type": "string", "description": "URL of the image to upscale."},
            "target_resolution": {
                "type": "string",
                "description": "The resolution of the upscaled image.",
                "default": "4k",
                "enum": list(UPSCALE_SIZES),
            },
            "enable_base64_output": {
                "type": "boolean",
                "description": _BASE64_TEXT,
                "default": False,
            },
        },
        ["image"],
    ),
)

#: The built-in catalogue by model id (``EmulatorConfig.models`` adds or replaces entries).
CATALOGUE: Final[Mapping[str, EmulatedModel]] = {
    m.model_id: m
    for m in (FLUX_KONTEXT_DEV, FLUX_KONTEXT_PRO_T2I, WAN_T2V_480P, FLUX_DEV_LORA, IMAGE_UPSCALER)
}
