"""What the lab report measures: the quick plan (CI, a few minutes on 2 cores) and the full one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lib_guided.gradop.optimise import GradOPSettings
from lib_guided.inversion.invert import SOLVERS
from lib_guided.lab.editing_eval import MASKS, EditSetting
from lib_guided.lab.synthesis_eval import SynthesisSetting

EARLY_EXIT_REFERENCE_ITERATIONS = 5  # the "5-iteration result" the speed target compares against


@dataclass(frozen=True)
class ReportPlan:
    scenes: int  # test scenes for synthesis and binding (same scenes, same noise for every method)
    per_scene: int  # images per scene; the Fréchet distance sees scenes * per_scene images
    reference: int  # held-out real scenes the Fréchet distance is measured against
    steps: int  # sampling steps for synthesis
    cfg: float
    synthesis: tuple[SynthesisSetting, ...]
    inversion_scenes: int
    inversion_steps: tuple[int, ...]
    edit_scenes: int
    edits: tuple[EditSetting, ...]
    edit_cfg: float
    examples: int = 6  # rows of each example grid
    region_weight: float = 1.0  # "with region control"
    seed: int = 1000
    inversion_solvers: tuple[str, ...] = SOLVERS
    # early exit: each solver at each residual tolerance, against a fixed EARLY_EXIT_REFERENCE_ITERATIONS
    early_exit_solvers: tuple[str, ...] = ("fixed-point", "aidi-a")
    early_exit_tols: tuple[float, ...] = (3e-2, 1e-2, 3e-3, 1e-3, 1e-4)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _sdedit(strength: float) -> SynthesisSetting:
    return SynthesisSetting("sdedit", f"strength {strength}", strength=strength)


def gradop_plus(
    strength: float = GradOPSettings.strength,
    adam_steps: int = GradOPSettings.adam_steps,
    decoder: str = "full",
) -> SynthesisSetting:
    label = f"strength {strength}, N {adam_steps}" + ("" if decoder == "full" else f", {decoder} decoder")
    return SynthesisSetting("gradop+", label, strength=strength, adam_steps=adam_steps, decoder=decoder)


TEXT = SynthesisSetting("text", "text only")
GRADOP_PLUS_DEFAULT = gradop_plus()
# the paper's step, kept beside the default that replaced it (README, "GradOP+ levers")
GRADOP_PLUS_PAPER = SynthesisSetting(
    "gradop+", "strength 0.8, N 12, the paper's Adam lr 0.1", optimiser="adam", lr=0.1
)

QUICK = ReportPlan(
    scenes=16,
    per_scene=2,
    reference=512,
    steps=20,
    cfg=5.0,
    synthesis=(
        TEXT,
        _sdedit(0.5),
        _sdedit(0.7),
        _sdedit(0.9),
        GRADOP_PLUS_DEFAULT,
        GRADOP_PLUS_PAPER,
        *(
            gradop_plus(decoder=d)
            for d in ("linear", "linear-anchored", "linear-anchored-half", "linear-local")
        ),
        SynthesisSetting("gradop", "strength 0.6, 30 Adam steps", strength=0.6, relaxed_steps=30),
    ),
    inversion_scenes=6,
    inversion_steps=(10, 20),
    edit_scenes=12,
    edits=(
        EditSetting("ddim", 10, "none"),
        *(EditSetting("aidi-a", 10, m) for m in MASKS),
        EditSetting("aidi-a", 10, "auto", injection=0.0),  # the lever: attention injection off
    ),
    edit_cfg=5.0,
    early_exit_tols=(3e-2, 1e-2, 3e-3, 1e-3),
)

# About 25 minutes on one thread (extrapolated from the quick plan's 250 s): 48 scenes x 2 images, 12
# synthesis settings, 12 inversion scenes, 24 edited scenes.
FULL = ReportPlan(
    scenes=48,
    per_scene=2,
    reference=1024,
    steps=25,
    cfg=5.0,
    synthesis=(
        TEXT,
        *(_sdedit(s) for s in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)),
        GRADOP_PLUS_DEFAULT,
        GRADOP_PLUS_PAPER,
        gradop_plus(0.8, 6),
        gradop_plus(0.9, 12),
        *(
            gradop_plus(decoder=d)
            for d in (
                "full-checkpointed",
                "linear",
                "linear-anchored",
                "linear-anchored-half",
                "linear-local",
            )
        ),
        SynthesisSetting("gradop", "strength 0.6", strength=0.6),
        SynthesisSetting("gradop", "strength 0.4", strength=0.4),
    ),
    inversion_scenes=12,
    inversion_steps=(10, 20, 50),
    edit_scenes=24,
    edits=(
        *(EditSetting("ddim", n, "none") for n in (10, 20)),
        *(EditSetting("aidi-a", n, m) for n in (10, 20) for m in MASKS),
        *(EditSetting("aidi-a", 10, m, injection=0.0) for m in MASKS),  # attention injection off
    ),
    edit_cfg=5.0,
)
