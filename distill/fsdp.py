"""FSDP2 for the trainer (``sharding = "fsdp"``): the generator, the fake score and the EMA sharded over the
processes (weights, gradients, Adam states), the frozen teacher sharded or replicated; checkpoints written with
torch's distributed checkpoint (DCP), so a run resumes on any number of processes.

Units: each block of the network's block lists (UNet down/mid/up blocks, DiT transformer blocks) is one FSDP unit,
then the root, so only one block's full weights live at a time. Gradients are reduce-scattered as sums (divide
factor 1): every loss is already divided by the global batch, as under DDP, so an FSDP step equals the DDP one up
to the order of the sums. Autocast (bf16) runs inside with fp32 master weights; fp16 loss scaling is refused (its
skip decision would need the shards' inf checks gathered first).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.distributed as dist

BLOCK_LISTS = ("down_blocks", "up_blocks", "transformer_blocks", "single_transformer_blocks", "blocks")


def units(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules sharded one by one before the root: every block of the network's block lists, and mid_block."""
    out = []
    for name in BLOCK_LISTS:
        blocks = getattr(net, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            out.extend(blocks)
    if isinstance(getattr(net, "mid_block", None), torch.nn.Module):
        out.append(net.mid_block)
    return out


def device_mesh(device: torch.device):
    """All processes in one dimension, on the run's device type (torch's default follows the machine's
    accelerator, which would move a CPU run's networks to the GPU)."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(torch.device(device).type, (dist.get_world_size(),))


def shard(net: torch.nn.Module, mesh=None) -> torch.nn.Module:
    """fully_shard the network in place, block by block then the root, summing gradients over processes;
    ``mesh``: ``device_mesh(the run's device)`` (None: torch's default)."""
    from torch.distributed.fsdp import fully_shard

    for block in units(net):
        fully_shard(block, mesh=mesh)
    fully_shard(net, mesh=mesh)
    for m in net.modules():  # summed, not averaged, and as a plain SUM (gloo has no pre-multiplied sum)
        if hasattr(m, "set_gradient_divide_factor"):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    return net


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of a (possibly sharded) tensor."""
    return t.to_local() if hasattr(t, "to_local") else t


def local_bytes(tensors) -> int:
    return sum(local(t).numel() * local(t).element_size() for t in tensors if t is not None)


def optimizer_tensors(opt: torch.optim.Optimizer):
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                yield v


def full_copy(sharded: torch.nn.Module, skeleton: torch.nn.Module, *, everywhere: bool = True,
              device: torch.device | str = "cpu") -> torch.nn.Module | None:
    """A plain (unsharded) copy of a sharded network (collective): its full state dict loaded into a meta-device
    ``skeleton`` of the architecture, on ``device``. ``everywhere``: on every process (the proxy generates on all);
    else gathered to rank 0's CPU only (grids, snapshots) and None elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere))
    if not everywhere and dist.get_rank() != 0:
        return None
    plain = copy.deepcopy(skeleton)
    plain.load_state_dict(full, assign=True)
    donors = dict(sharded.named_buffers())  # FSDP leaves buffers unsharded
    for name, b in list(plain.named_buffers()):
        if b.is_meta:
            owner, _, leaf = name.rpartition(".")
            mod = plain.get_submodule(owner) if owner else plain
            mod._buffers[leaf] = local(donors[name]).detach().clone()
    return plain.to(device)


def state_dicts(trainer) -> dict:
    """The trainer's state as DCP saves and loads it (model and optimizer state dicts in their sharded form)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"generator": get_model_state_dict(trainer.generator), "ema": get_model_state_dict(trainer.ema),
            "fake": get_model_state_dict(trainer.fake),
            "opt_gen": get_optimizer_state_dict(trainer.generator, trainer.opt_gen),
            "opt_fake": get_optimizer_state_dict(trainer.fake, trainer.opt_fake)}


def save(trainer, folder: Path, meta: dict) -> None:
    """Every process writes its shards into ``folder`` (atomically: a temporary folder renamed by rank 0);
    ``meta`` (config and counters) goes in as one JSON string."""
    import json
    import shutil

    import torch.distributed.checkpoint as dcp

    from sidbench.core.atomic import temporary_folder

    main = not dist.is_initialized() or dist.get_rank() == 0
    done = [folder.is_dir()]  # this iteration saved already (the final save after a periodic one): rank 0 decides
    if dist.is_initialized():
        dist.broadcast_object_list(done, src=0)
    if done[0]:
        return
    tmp = temporary_folder(folder)  # one a killed run left is removed on resume
    if main and tmp.exists():
        shutil.rmtree(tmp)
    if dist.is_initialized():
        dist.barrier()
    dcp.save({**state_dicts(trainer), "meta": {"json": json.dumps(meta)}}, checkpoint_id=str(tmp))
    if dist.is_initialized():
        dist.barrier()
    if main:
        tmp.rename(folder)
    if dist.is_initialized():
        dist.barrier()


def load(trainer, folder: Path) -> dict:
    """Fill the trainer's networks and optimisers from a DCP folder written by any number of processes; returns
    its meta (config, counters)."""
    import json

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    meta = {"meta": {"json": ""}}
    dcp.load(meta, checkpoint_id=str(folder))  # the settings first: a refused resume reads no weights
    trainer._check_trajectory(json.loads(meta["meta"]["json"])["config"])
    state = {**state_dicts(trainer), **meta}
    dcp.load(state, checkpoint_id=str(folder))
    for name in ("generator", "ema", "fake"):
        set_model_state_dict(getattr(trainer, name), state[name])
    set_optimizer_state_dict(trainer.generator, trainer.opt_gen, state["opt_gen"])
    set_optimizer_state_dict(trainer.fake, trainer.opt_fake, state["opt_fake"])
    return json.loads(state["meta"]["json"])
