"""How a Ray staging job is sized and configured (no cluster needed)."""

from __future__ import annotations

import pytest

from vestige_embed.cli.main import main
from vestige_embed.errors import ConfigError
from vestige_embed.run.distributed import RayOptions


def test_every_worker_gets_several_ranges_of_at_least_a_hundred_rows() -> None:
    two = RayOptions(workers=2)
    assert two.parts(1_000) == 8  # not one range of 2,000 for two workers
    assert two.parts(150) == 1
    assert two.parts(1_000_000) == 500  # about 2,000 rows each


def test_an_actor_runs_its_model_on_its_own_cpus_and_on_cuda_with_a_gpu() -> None:
    assert (RayOptions(cpus_per_worker=4).threads, RayOptions(cpus_per_worker=4).device) == (4, "cpu")
    assert (RayOptions(cpus_per_worker=0.5).threads, RayOptions(gpus_per_worker=1).device) == (1, "cuda")


@pytest.mark.parametrize("options", [{"workers": 0}, {"cpus_per_worker": 0}, {"stall_secs": 0}])
def test_impossible_sizes_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RayOptions(**options)  # type: ignore[arg-type]


def test_a_worker_env_without_a_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["migrate", "stage", "--model", "vestige/hash-64", "--ray-address", "local",
                 "--worker-env", "VESTIGE_MODELS_DIR", "--postgres-url", "postgresql://nobody@/nowhere"])  # fmt: skip
    assert code == 2
    assert "--worker-env takes NAME=VALUE, got 'VESTIGE_MODELS_DIR'" in capsys.readouterr().err
