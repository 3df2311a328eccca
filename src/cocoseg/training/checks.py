"""Checks of the train section against what Lightning and this machine accept, before any heavy import.

Importing Lightning takes 3-7 s on a busy 2-core machine, so a typo would otherwise surface late and as a
traceback. The names below are Lightning's own (a test keeps them equal to the installed version), and
CUDA devices are counted by asking the driver directly, as torch does, without importing torch.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform

from cocoseg.core.machine import usable_cores
from cocoseg.core.params import ConfigError, Params, TrainConfig

# Trainer(accelerator=...): AcceleratorRegistry's names plus Lightning's aliases "auto" and "gpu"
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
# Trainer(strategy=...): StrategyRegistry's names plus "auto"
STRATEGIES = (
    "auto",
    "ddp",
    "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true",
    "ddp_fork",
    "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_notebook",
    "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "ddp_spawn",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
    "fsdp",
    "fsdp_cpu_offload",
    "single_device",
    "single_tpu",
    "single_xla",
    "xla",
    "xla_debug",
)
# Trainer(precision=...): Lightning's _PRECISION_INPUT_STR and its aliases, plus our "auto"
PRECISIONS = (
    "auto",
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected one of {list(allowed)}")


def check_train(params: Params) -> None:
    """The train stage's checks of the train section: Lightning's names, then the devices asked for."""
    cfg = params.train
    _one_of("train.accelerator", cfg.accelerator, ACCELERATORS)
    _one_of("train.strategy", cfg.strategy, STRATEGIES)
    _one_of("train.precision", cfg.precision, PRECISIONS)
    check_devices(cfg)
    check_nodes(cfg)


# What a launcher of several nodes sets (torchrun, SLURM, MPI, LSF, or MASTER_ADDR and NODE_RANK by hand),
# as Lightning's cluster environments read it
LAUNCHER_VARIABLES = (
    "MASTER_ADDR",
    "NODE_RANK",
    "TORCHELASTIC_RUN_ID",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "LSB_JOBID",
)


def check_nodes(cfg: TrainConfig) -> None:
    """``train.num_nodes`` above 1 without a launcher: Lightning would wait for the other nodes for ever."""
    if cfg.num_nodes > 1 and not any(name in os.environ for name in LAUNCHER_VARIABLES):
        raise ConfigError(
            f"train.num_nodes: {cfg.num_nodes} needs a launcher on every node (torchrun or SLURM's "
            "srun, which set MASTER_ADDR and NODE_RANK; see the README's DDP section), and none is "
            "set here: training would wait for the other nodes for ever; expected 1"
        )


def check_devices(cfg: TrainConfig) -> None:
    """``train.devices`` must name devices this machine has, for the accelerator asked for."""
    devices = cfg.devices
    if (
        isinstance(devices, str)
        and devices != "auto"
        or isinstance(devices, int)
        and devices < 1
        and devices != -1
        or isinstance(devices, tuple)
        and (not devices or min(devices) < 0 or len(set(devices)) < len(devices))
    ):
        raise ConfigError(
            f"train.devices: {_show(devices)} is not allowed; expected auto, a number of devices "
            ">= 1 (-1 = all), or a list of distinct device indices"
        )
    available = available_devices(cfg.accelerator)
    if available is None:
        check_cpu_processes(cfg)
        return  # auto with a GPU: Lightning picks what there is
    wanted = (
        max(devices) + 1
        if isinstance(devices, tuple)
        else devices
        if isinstance(devices, int) and devices > 0
        else 1
    )
    if wanted > available:
        have = f"{available} {cfg.accelerator} device{'s' if available != 1 else ''}"
        raise ConfigError(
            f"train.accelerator: {cfg.accelerator!r} with train.devices {_show(devices)} is not "
            f"possible: this machine has {have}; expected train.accelerator: cpu or auto"
        )


def check_cpu_processes(cfg: TrainConfig) -> None:
    """On the CPU (``cpu``, or ``auto`` without a GPU) ``train.devices`` counts training processes: one
    each, with their own copy of the model and loader workers. More than the usable cores only compete
    for them (``devices: 1000`` started hundreds of processes), so that is refused."""
    devices = cfg.devices
    if cfg.accelerator not in ("cpu", "auto") or (cfg.accelerator == "auto" and cuda_device_count() > 0):
        return
    wanted = len(devices) if isinstance(devices, tuple) else devices if isinstance(devices, int) else 1
    cores = usable_cores()
    if wanted > cores:
        raise ConfigError(
            f"train.devices: {_show(devices)} is not allowed on the CPU, where each device is a "
            f"training process: this process may use {cores} CPU cores; expected at most {cores}"
        )


def available_devices(accelerator: str) -> int | None:
    """How many devices of ``accelerator`` this machine has; None where any number will do (auto, cpu)."""
    if accelerator in ("gpu", "cuda"):
        return cuda_device_count()
    if accelerator == "mps":
        return int(platform.system() == "Darwin" and platform.machine() == "arm64")
    if accelerator == "tpu":
        return 1 if importlib.util.find_spec("torch_xla") is not None else 0
    return None


def cuda_device_count() -> int:
    """CUDA devices visible to this process (CUDA_VISIBLE_DEVICES applies), from the driver; 0 without one."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def _show(devices: int | str | tuple[int, ...]) -> str:
    return repr(list(devices)) if isinstance(devices, tuple) else repr(devices)


def check_timm_encoder(params: Params, name: str) -> None:
    """A ``tu-<name>`` encoder against timm's models (timm is imported: this runs when training starts)."""
    model = params.model(name)
    if model.encoder.startswith("tu-"):
        import timm

        if not timm.is_model(model.encoder[3:]):
            raise ConfigError(
                f"models.{name}.encoder: {model.encoder!r} is not allowed; {model.encoder[3:]!r} "
                "is not a timm model (timm.list_models() lists them)"
            )
