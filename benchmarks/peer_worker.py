"""One peer toolkit trains one model for one epoch on exported arrays; prints one JSON line.

Runs in the peers' own environment (it imports no mscbench):

    /tmp/peers/bin/python benchmarks/peer_worker.py EXPORT.npz torch-rechub deepfm 4096 THREADS [DEVICE]
    FUXICTR_ZOO=/tmp/peers/FuxiCTR/model_zoo /tmp/peers/bin/python benchmarks/peer_worker.py \
        EXPORT.npz fuxictr din 512 THREADS cuda

DEVICE (default cpu; cuda, cuda:1, ...) reaches each toolkit through its own device option: torch-rechub's
trainers' `device`, DeepCTR-Torch's models' `device`, FuxiCTR's `gpu` (-1 is the CPU). The peak memory is
the GPU's peak allocation there, the process's peak resident memory on the CPU.

Each toolkit is used through its public API as its documentation shows it: torch-rechub's feature
classes, model and `CTRTrainer` (`MTLTrainer` for the multi-task models); DeepCTR-Torch's feature columns,
`compile` and `fit`; FuxiCTR's `FeatureMap` (loaded from the `feature_map.json` its preprocessing would
write), `RankDataLoader` over per-split `.npz` files, a model of its model zoo (a git checkout, imported
from `$FUXICTR_ZOO`), `fit` and `predict`. All train with Adam (lr 1e-3, no weight decay or L2), embedding
dim 16, ReLU, no dropout, the scenario id as one more sparse field where the data has several scenarios.
DeepFM and DCN (MLP 128-64) and the multi-task models mean-pool the sequences in the item/category tables;
DIN (MLP 128-64) attends over them (attention MLP 80-40, ReLU, no softmax, padding masked) with item_id and
category as the target, item ⊕ category as one key (as mscbench). Shared-Bottom, MMoE and PLE train one
binary task on one scenario, as mscbench's multi-scenario models with one scenario (they route rows by the
scenario rather than embed it): Shared-Bottom MLP 128, tower 64; MMoE 4 experts 128-64, softmax gates
over a bias-free Linear of the input, no tower (Linear(64, 1)); PLE one CGC level, 2 specific and 1 shared
expert 128-64-32, gates as MMoE's, tower 16. Where a toolkit fixes anything else:

- torch-rechub puts BatchNorm in every MLP, its gates included (Linear with bias, BatchNorm, softmax); its
  DIN uses Dice in the main MLP, attends over each sequence separately, masks no padding (padding ids
  embed to zero instead) and takes no dense values. `MTLTrainer.fit` always ends by evaluating validation
  data and copying and saving the best weights: it gets one batch of test rows.
- DeepCTR-Torch's DIN masks all but the first `hist_length` items: its sequences are moved to the front.
  Its multi-task models refuse fewer than two tasks (its `fit` and `predict` take one): each is built for
  two and keeps the first, without the second's gate, tower and (PLE) specific experts. Its PLE builds
  `specific_expert_num` shared experts and runs `shared_expert_num` (the unused one is dropped), and also
  runs the shared experts' gate at the last level, whose output it discards (a gate over the one task's
  candidates here).
- FuxiCTR embeds the dense values (one 16-wide vector each, in the FM part of DeepFM too) and clips
  gradients at norm 10 in `fit`; `fit` also always ends by evaluating its validation data, checkpointing
  and reloading the best weights: it gets one batch of test rows so that this costs milliseconds. Its
  loader runs in the training process (`num_workers=0`), as the other toolkits' do. Its gates have a bias;
  its PLE also runs the shared experts' gate (over the shared expert alone) at the last level, whose
  output it discards.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

DIM, HIDDEN, ATTENTION, LR, CROSS_LAYERS = 16, [128, 64], [80, 40], 1e-3, 3
MULTI_TASK = ("shared_bottom", "mmoe", "ple")  # one task; the settings are those of mscbench's defaults:
BOTTOM, BOTTOM_TOWER = [128], [64]  # Shared-Bottom
EXPERTS, MMOE_EXPERT = 4, [128, 64]  # MMoE (no tower: Linear(64, 1))
SPECIFIC, SHARED, PLE_EXPERT, PLE_TOWER = 2, 1, [128, 64, 32], [16]  # PLE (one CGC level)


def columns(data: dict, split: str) -> dict[str, np.ndarray]:
    """Name -> column of one split: each sparse field, the scenario, each dense value, each sequence."""
    names = [str(n) for n in data["sparse_names"]]
    out = {name: data[f"{split}_sparse"][:, i] for i, name in enumerate(names)}
    out["scenario"] = data[f"{split}_scenario"]
    out |= {str(name): data[f"{split}_dense"][:, i] for i, name in enumerate(data["dense_names"])}
    out |= {str(name): data[f"{split}_seq"][:, i] for i, name in enumerate(data["seq_names"])}
    return out


def vocabularies(data: dict) -> dict[str, int]:
    """Sparse field (the scenario included where there are several) -> vocabulary size. One scenario is a
    constant, and mscbench's multi-scenario models (those run on one) route by it rather than embed it."""
    vocab = dict(zip(map(str, data["sparse_names"]), data["sparse_vocab"].tolist()))
    scenarios = int(data["num_scenarios"])
    return vocab | ({"scenario": scenarios} if scenarios > 1 else {})


def sequences(data: dict) -> list[tuple[str, str]]:
    """(sequence, the sparse field whose table it shares): also DIN's (history, target) pairs."""
    return list(zip(map(str, data["seq_names"]), map(str, data["seq_tables"])))


def rechub_features(data: dict, pooling: str) -> tuple[dict, list, list]:
    """torch-rechub's sparse features by name, dense features and sequences (in their fields' tables)."""
    from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature

    vocab = vocabularies(data)
    # id 0 is padding in every field but the scenario: a zero vector, so DIN's unmasked attention skips it
    sparse = {name: SparseFeature(name, size, embed_dim=DIM, padding_idx=None if name == "scenario" else 0)
              for name, size in vocab.items()}
    dense = [DenseFeature(str(name)) for name in data["dense_names"]]
    seqs = [SequenceFeature(name, vocab[table], embed_dim=DIM, pooling=pooling, shared_with=table,
                            padding_idx=0) for name, table in sequences(data)]
    return sparse, dense, seqs


def rechub(data: dict, model_name: str, batch: int, device: str) -> tuple[float, np.ndarray]:
    if model_name in MULTI_TASK:
        return rechub_multitask(data, model_name, batch, device)
    from torch_rechub.models.ranking import DCN, DIN, DeepFM
    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import DataGenerator

    pooling = "concat" if model_name == "din" else "mean"  # concat: the whole sequence, for the attention
    sparse, dense, seqs = rechub_features(data, pooling)
    mlp = {"dims": HIDDEN, "dropout": 0.0}
    if model_name == "din":
        targets = [sparse[table] for _, table in sequences(data)]
        others = [feature for feature in sparse.values() if feature not in targets]
        model = DIN(others, seqs, targets, mlp_params=mlp,  # its main MLP's activation is fixed (Dice)
                    attention_mlp_params={"dims": ATTENTION, "activation": "relu", "use_softmax": False})
    elif model_name == "deepfm":
        model = DeepFM(deep_features=[*sparse.values(), *seqs, *dense], fm_features=[*sparse.values(), *seqs],
                       mlp_params=mlp | {"activation": "relu"})
    else:
        model = DCN(features=[*sparse.values(), *seqs, *dense], n_cross_layers=CROSS_LAYERS,
                    mlp_params=mlp | {"activation": "relu"})
    train, test = columns(data, "train"), columns(data, "test")
    loaders = DataGenerator(train, data["train_label"]).generate_dataloader(
        x_val=test, y_val=data["test_label"], x_test=test, y_test=data["test_label"], batch_size=batch)
    trainer = CTRTrainer(model, optimizer_params={"lr": LR, "weight_decay": 0.0}, n_epoch=1,
                         model_path=tempfile.mkdtemp(), device=device)
    started = time.perf_counter()
    trainer.fit(loaders[0])
    seconds = time.perf_counter() - started
    return seconds, np.asarray(trainer.predict(trainer.model, loaders[2]))


def rechub_multitask(data: dict, model_name: str, batch: int, device: str) -> tuple[float, np.ndarray]:
    from torch.utils.data import DataLoader
    from torch_rechub.models.multi_task import MMOE, PLE, SharedBottom
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator, PredictDataset

    sparse, dense, seqs = rechub_features(data, "mean")
    features, task = [*sparse.values(), *seqs, *dense], ["classification"]
    relu = {"activation": "relu", "dropout": 0.0}
    if model_name == "shared_bottom":
        model = SharedBottom(features, task, {"dims": BOTTOM} | relu, [{"dims": BOTTOM_TOWER} | relu])
    elif model_name == "mmoe":
        model = MMOE(features, task, EXPERTS, {"dims": MMOE_EXPERT} | relu, [{"dims": []} | relu])
    else:
        model = PLE(features, task, n_level=1, n_expert_specific=SPECIFIC, n_expert_shared=SHARED,
                    expert_params={"dims": PLE_EXPERT} | relu, tower_params_list=[{"dims": PLE_TOWER} | relu])
    train, test = columns(data, "train"), columns(data, "test")
    valid = {name: column[:batch] for name, column in test.items()}
    labels = data["train_label"][:, None], data["test_label"][:batch, None]  # [rows, tasks]
    loaders = DataGenerator(train, labels[0]).generate_dataloader(
        x_val=valid, y_val=labels[1], x_test=valid, y_test=labels[1], batch_size=batch)
    trainer = MTLTrainer(model, task, optimizer_params={"lr": LR, "weight_decay": 0.0}, n_epoch=1,
                         model_path=tempfile.mkdtemp(), device=device)
    started = time.perf_counter()
    trainer.fit(loaders[0], loaders[1])
    seconds = time.perf_counter() - started
    # its `predict` takes batches of inputs alone
    prob = trainer.predict(trainer.model, DataLoader(PredictDataset(test), batch_size=batch))
    return seconds, np.asarray(prob).ravel()


def deepctr_history(split: dict[str, np.ndarray], data: dict) -> dict[str, np.ndarray]:
    """DeepCTR's DIN input: each sequence as `hist_<target field>`, valid items first (it masks all but
    the first `hist_length` positions; the export pads on the left)."""
    out = dict(split)
    for name, table in sequences(data):
        seq = out.pop(name)
        out[f"hist_{table}"] = np.take_along_axis(seq, np.argsort(seq == 0, axis=1, kind="stable"), axis=1)
    out["hist_length"] = (seq != 0).sum(axis=1)  # the sequences share one padding
    return out


def deepctr(data: dict, model_name: str, batch: int, device: str) -> tuple[float, np.ndarray]:
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DCN, DIN, DeepFM

    vocab = vocabularies(data)
    sparse = [SparseFeat(name, size, embedding_dim=DIM) for name, size in vocab.items()]
    dense = [DenseFeat(str(name), 1) for name in data["dense_names"]]
    maxlen = int(data["train_seq"].shape[2])
    train, test = columns(data, "train"), columns(data, "test")
    no_l2 = {"l2_reg_embedding": 0.0, "l2_reg_dnn": 0.0, "dnn_hidden_units": tuple(HIDDEN), "device": device}
    if model_name == "din":
        targets = [table for _, table in sequences(data)]
        history = [VarLenSparseFeat(SparseFeat(f"hist_{table}", vocab[table], embedding_dim=DIM,
                                               embedding_name=table), maxlen, length_name="hist_length")
                   for table in targets]
        train, test = deepctr_history(train, data), deepctr_history(test, data)
        model = DIN(sparse + history + dense, targets, att_hidden_size=tuple(ATTENTION),
                    att_activation="relu", att_weight_normalization=False, **no_l2)
    else:
        pooled = [VarLenSparseFeat(SparseFeat(name, vocab[table], embedding_dim=DIM, embedding_name=table),
                                   maxlen=maxlen, combiner="mean") for name, table in sequences(data)]
        features = sparse + pooled + dense
        no_l2["l2_reg_linear"] = 0.0
        if model_name in MULTI_TASK:
            model = deepctr_multitask(features, model_name, device)
        elif model_name == "deepfm":
            model = DeepFM(features, features, **no_l2)
        else:
            model = DCN(features, features, cross_num=CROSS_LAYERS, l2_reg_cross=0.0, **no_l2)
    model.compile(torch.optim.Adam(model.parameters(), lr=LR), "binary_crossentropy")
    started = time.perf_counter()
    model.fit(train, data["train_label"], batch_size=batch, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return seconds, model.predict(test, batch_size=8192).ravel()


def deepctr_multitask(features: list, model_name: str, device: str):
    """DeepCTR's multi-task model for one task: built for two (it refuses fewer), it keeps the first task's
    gate and tower; `fit` and `predict` follow `num_tasks`."""
    from deepctr_torch.models import MMOE, PLE, SharedBottom

    two = {"task_types": ("binary", "binary"), "task_names": ("label", "unused"), "l2_reg_embedding": 0.0,
           "l2_reg_dnn": 0.0, "device": device}
    if model_name == "shared_bottom":
        model = SharedBottom(features, bottom_dnn_hidden_units=tuple(BOTTOM),
                             tower_dnn_hidden_units=tuple(BOTTOM_TOWER), **two)
    elif model_name == "mmoe":
        model = MMOE(features, num_experts=EXPERTS, expert_dnn_hidden_units=tuple(MMOE_EXPERT),
                     gate_dnn_hidden_units=(), tower_dnn_hidden_units=(), **two)
    else:
        model = PLE(features, shared_expert_num=SHARED, specific_expert_num=SPECIFIC, num_levels=1,
                    expert_dnn_hidden_units=tuple(PLE_EXPERT), gate_dnn_hidden_units=(),
                    tower_dnn_hidden_units=tuple(PLE_TOWER), **two)
        deepctr_ple_one_task(model)
    model.num_tasks = 1
    for per_task in ("out", "tower_dnn", "tower_dnn_final_layer", "gate_dnn_final_layer"):
        if hasattr(model, per_task):  # no `tower_dnn` without tower layers
            del getattr(model, per_task)[1:]
    return model


def deepctr_ple_one_task(model) -> None:
    """DeepCTR's PLE without the second task's experts and gate, nor the shared expert that it builds but
    never runs (it builds `specific_expert_num` of them). The shared experts' gate, which it also runs at the
    last level and whose output it drops there, must now weigh the one task's candidates, or forward fails."""
    for level in range(model.num_levels):
        del model.specific_experts[level][1:], model.specific_gate_dnn_final_layer[level][1:]
        del model.shared_experts[level][0][SHARED:]
        gate = model.shared_gate_dnn_final_layer[level]
        model.shared_gate_dnn_final_layer[level] = torch.nn.Linear(gate.in_features, SPECIFIC + SHARED, bias=False,
                                                                   device=gate.weight.device)


def fuxictr_feature_map(data: dict, folder: Path, pool: bool):
    """FuxiCTR's FeatureMap as its preprocessing would write it: 0 is padding (its convention too) except
    in the scenario; each sequence shares its field's table; `pool`: mean-pool sequences (its default)."""
    from fuxictr.features import FeatureMap

    vocab = vocabularies(data)
    features = [{name: {"source": "", "type": "categorical", "vocab_size": size}
                 | ({} if name == "scenario" else {"padding_idx": 0})} for name, size in vocab.items()]
    features += [{str(name): {"source": "", "type": "numeric"}} for name in data["dense_names"]]
    encoder = {"feature_encoder": "layers.MaskedAveragePooling()"} if pool else {}
    features += [{name: {"source": "", "type": "sequence", "vocab_size": vocab[table], "padding_idx": 0,
                         "max_len": int(data["train_seq"].shape[2]), "share_embedding": table} | encoder}
                 for name, table in sequences(data)]
    path = folder / "feature_map.json"
    path.write_text(json.dumps({"dataset_id": folder.name, "labels": ["label"], "features": features}))
    feature_map = FeatureMap(folder.name, str(folder))
    feature_map.load(str(path), {"embedding_dim": DIM})
    return feature_map


def fuxictr_model(feature_map, model_name: str, data: dict, model_root: str, device: str):
    """One model of FuxiCTR's zoo, from the checkout at `$FUXICTR_ZOO` (its wheel ships no models)."""
    zoo = Path(os.environ["FUXICTR_ZOO"])
    sys.path.insert(0, str(zoo.parent))
    models = importlib.import_module(zoo.name)
    gpu = (torch.device(device).index or 0) if device.startswith("cuda") else -1  # its device option (-1: CPU)
    common = {"gpu": gpu, "optimizer": "adam", "loss": "binary_crossentropy", "learning_rate": LR,
              "embedding_dim": DIM, "embedding_regularizer": None, "net_regularizer": None, "net_dropout": 0,
              "batch_norm": False, "metrics": ["AUC"], "verbose": 0, "model_root": model_root}
    if model_name == "din":
        return models.DIN(feature_map, dnn_hidden_units=HIDDEN, attention_hidden_units=ATTENTION,
                          attention_hidden_activations="ReLU", din_use_softmax=False,
                          din_target_field=[tuple(table for _, table in sequences(data))],
                          din_sequence_field=[tuple(name for name, _ in sequences(data))], **common)
    if model_name == "deepfm":
        return models.DeepFM(feature_map, hidden_units=HIDDEN, hidden_activations="ReLU", **common)
    one_task = {"task": ["binary_classification"], "num_tasks": 1, "hidden_activations": "ReLU"}
    if model_name == "shared_bottom":
        return models.ShareBottom(feature_map, bottom_hidden_units=BOTTOM, tower_hidden_units=BOTTOM_TOWER,
                                  **one_task, **common)
    if model_name == "mmoe":
        return models.MMoE(feature_map, num_experts=EXPERTS, expert_hidden_units=MMOE_EXPERT, gate_hidden_units=[],
                           tower_hidden_units=[], **one_task, **common)
    if model_name == "ple":
        return models.PLE(feature_map, num_layers=1, num_specific_experts=SPECIFIC, num_shared_experts=SHARED,
                          expert_hidden_units=PLE_EXPERT, gate_hidden_units=[], tower_hidden_units=PLE_TOWER,
                          **one_task, **common)
    return models.DCN(feature_map, dnn_hidden_units=HIDDEN, num_cross_layers=CROSS_LAYERS, **common)


def fuxictr(data: dict, model_name: str, batch: int, device: str) -> tuple[float, np.ndarray]:
    from fuxictr.pytorch.dataloaders import RankDataLoader

    with tempfile.TemporaryDirectory() as root:  # the splits as .npz files, read whole by the loaders
        folder = Path(root, "mscbench")  # the data, and where `fit` checkpoints (model_root/dataset_id)
        folder.mkdir()
        feature_map = fuxictr_feature_map(data, folder, pool=model_name != "din")
        splits = {"train": columns(data, "train") | {"label": data["train_label"]},
                  "test": columns(data, "test") | {"label": data["test_label"]}}
        splits["valid"] = {name: column[:batch] for name, column in splits["test"].items()}
        for split, arrays in splits.items():
            np.savez(folder / f"{split}.npz", **arrays)
        files = {f"{split}_data": str(folder / f"{split}.npz") for split in splits}
        train, valid, test = RankDataLoader(feature_map, batch_size=batch, shuffle=True, num_workers=0,
                                            **files)
        model = fuxictr_model(feature_map, model_name, data, root, device)
        started = time.perf_counter()
        model.fit(train, epochs=1, validation_data=valid)
        seconds = time.perf_counter() - started
    prob = model.predict(test)
    return seconds, np.asarray(prob["label"] if model_name in MULTI_TASK else prob)  # multi-task: label -> prob


def main() -> None:
    path, toolkit, model_name, batch, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
    torch.set_num_threads(int(threads))  # the same operator threads as mscbench's run
    torch.manual_seed(0)
    data = dict(np.load(path))
    run = {"torch-rechub": rechub, "deepctr-torch": deepctr, "fuxictr": fuxictr}[toolkit]
    seconds, prob = run(data, model_name, batch, device)
    print(json.dumps({"toolkit": toolkit, "model": model_name, "batch": batch,
                      "train_per_second": len(data["train_label"]) / seconds,
                      "test_auc": float(roc_auc_score(data["test_label"], prob)),
                      "peak_mib": peak_mib(device)}))


def reset_peak(device: str) -> None:
    """Start measuring `peak_mib` afresh: the GPU's peak allocation, or on the CPU this process's peak resident
    memory (Linux: writing 5 to clear_refs sets VmHWM back to the current VmRSS)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")


def peak_mib(device: str = "cpu") -> float:
    """This process's peak memory on `device`: tensors allocated on the GPU (torch's caching allocator), or on
    the CPU the peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resident_mib("VmHWM")


def resident_mib(key: str = "VmRSS") -> float:
    """A memory line of /proc/self/status (VmRSS: now; VmHWM: the peak), in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(f"{key}:"))
    return int(line.split()[1]) / 1024


if __name__ == "__main__":
    main()
