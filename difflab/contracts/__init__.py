"""The contracts every part of difflab is written against, and the stable plug-in surface: what a
sampler provides and declares (``difflab.contracts.sampler``), what a target provides and declares
and what a target family registers (``difflab.contracts.target``). A plug-in imports these names
from ``difflab.contracts``; everything else in difflab reads these declarations, and nothing probes
objects with ``hasattr`` (the one exception is the check of a plug-in's own objects). Importing the
contracts imports no numpy."""

from difflab.contracts.sampler import (
    CONTINUOUS_TARGET,
    DISCRETE_TARGET,
    OUTPUT_OPTIONS,
    STEPS,
    AffineStep,
    Capabilities,
    Info,
    Option,
    OptionNeed,
    PathStep,
    Sampler,
    SamplerEntry,
    Steered,
    at_least_one,
    at_least_zero,
    check_argument,
    common_options,
    init_option,
    non_negative,
    positive,
    seed_range,
    step_count,
    unit_interval,
    with_default,
)
from difflab.contracts.target import (
    Components,
    DiscreteTarget,
    Target,
    TargetFeatures,
    TargetFile,
    TargetKind,
    check_compatible,
)

__all__ = [
    "CONTINUOUS_TARGET", "DISCRETE_TARGET", "OUTPUT_OPTIONS", "STEPS", "AffineStep", "Capabilities", "Components",
    "DiscreteTarget", "Info", "Option", "OptionNeed", "PathStep", "Sampler", "SamplerEntry", "Steered", "Target",
    "TargetFeatures", "TargetFile", "TargetKind", "at_least_one", "at_least_zero", "check_argument", "check_compatible",
    "common_options", "init_option", "non_negative", "positive", "seed_range", "step_count", "unit_interval",
    "with_default",
]
