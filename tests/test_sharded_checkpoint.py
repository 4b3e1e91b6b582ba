"""The sharded checkpoint layout in one process (torch.distributed.checkpoint writes without a
process group): it loads like any checkpoint, a missing rank file or a crafted .metadata is refused
by name before anything runs. The multi-process writes and resumes: tests/train/test_fsdp.py."""

import io
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp

from core import checkpoint as ck
from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # one process, on purpose
TINY = ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=16, vocab_size=64)


def sharded(root, step: int = 4):
    """A committed one-rank sharded checkpoint of a seeded model, as rank 0 of an FSDP run commits it."""
    torch.manual_seed(0)
    m = GPT(TINY)
    final = root / "checkpoints" / ck.step_name(step)
    tmp = ck.temp_folder(final)
    weights = {k: v for k, v in m.state_dict().items() if k != "lm_head.weight"}
    dcp.save({"model": weights}, storage_writer=dcp.FileSystemWriter(str(tmp / ck.SHARDS), single_file_per_rank=True),
             no_dist=True)
    return m, ck.save_checkpoint(root, step, m, sharded=1)


def test_a_sharded_checkpoint_loads_in_one_process(tmp_path):
    m, path = sharded(tmp_path)
    assert not (path / ck.WEIGHTS).exists() and (path / "shards" / "__0_0.distcp").is_file()
    loaded, _, meta = ck.load_model(path)
    x = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], m.eval()(x)[0])
    assert meta["sharded"] == {"world_size": 1} and loaded.tied


def test_a_missing_rank_file_is_named(tmp_path):
    _, path = sharded(tmp_path)
    (path / "shards" / "__0_0.distcp").unlink()
    with pytest.raises(UserError, match=r"shards/__0_0\.distcp: missing or not a regular file"):
        ck.load_model(path)


def test_a_crafted_metadata_cannot_run_code(tmp_path):
    """(A loader verifies the manifest's sha256 first; this is the layer below, should one match.)"""
    _, path = sharded(tmp_path)

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    pickle.dump(Boom(), buf)
    (path / "shards" / ".metadata").write_bytes(buf.getvalue())
    with pytest.raises(UserError, match=r"builtins\.print is not part of a checkpoint's metadata"):
        ck.check_weight_shapes(path, TINY, {"kind": "lm"}, {"sharded": {"world_size": 1}})


@pytest.mark.parametrize("module, name", [
    ("torch.distributed.checkpoint.filesystem", "os.system"),  # a dotted path through a module it imports
    ("torch.distributed.checkpoint.filesystem", "_write_item"),  # a function of an allowed module
])
def test_metadata_reaches_only_the_formats_own_records(tmp_path, module, name):
    _, path = sharded(tmp_path)
    # protocol 4 resolves dotted names in find_class: STACK_GLOBAL of (module, name), then call it
    payload = (b"\x80\x04" + pickle.dumps(module, 4)[2:-1] + pickle.dumps(name, 4)[2:-1]
               + b"\x93" + pickle.dumps(("echo pwned",), 4)[2:-1] + b"R.")
    (path / "shards" / ".metadata").write_bytes(payload)
    with pytest.raises(UserError, match=r"is not part of a checkpoint's metadata"):
        ck.check_weight_shapes(path, TINY, {"kind": "lm"}, {"sharded": {"world_size": 1}})
