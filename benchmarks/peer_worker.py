"""One peer toolkit trains one model for one epoch on exported arrays; prints one JSON line.

Runs in the peers' own environment (it imports no mscbench):

    /tmp/peers/bin/python benchmarks/peer_worker.py EXPORT.npz torch-rechub deepfm 4096 THREADS

Each toolkit is used through its public API as its documentation shows it: torch-rechub's feature
classes, model and `CTRTrainer`; DeepCTR-Torch's feature columns, `compile` and `fit`. Both train with
Adam (lr 1e-3, no weight decay or L2), embedding dim 16 and MLP 128-64, the sequences mean-pooled in the
item/category tables, the scenario id as one more sparse field.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

DIM, HIDDEN, LR, CROSS_LAYERS = 16, [128, 64], 1e-3, 3


def columns(data: dict, split: str) -> dict[str, np.ndarray]:
    """Name -> column of one split: each sparse field, the scenario, each dense value, each sequence."""
    names = [str(n) for n in data["sparse_names"]]
    out = {name: data[f"{split}_sparse"][:, i] for i, name in enumerate(names)}
    out["scenario"] = data[f"{split}_scenario"]
    out |= {str(name): data[f"{split}_dense"][:, i] for i, name in enumerate(data["dense_names"])}
    out |= {str(name): data[f"{split}_seq"][:, i] for i, name in enumerate(data["seq_names"])}
    return out


def rechub(data: dict, model_name: str, batch: int) -> tuple[float, np.ndarray]:
    from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature
    from torch_rechub.models.ranking import DCN, DeepFM
    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import DataGenerator

    vocab = dict(zip(map(str, data["sparse_names"]), data["sparse_vocab"].tolist()))
    sparse = [SparseFeature(name, size, embed_dim=DIM) for name, size in vocab.items()]
    sparse.append(SparseFeature("scenario", int(data["num_scenarios"]), embed_dim=DIM))
    sequences = [SequenceFeature(str(name), vocab[str(table)], embed_dim=DIM, pooling="mean", shared_with=str(table),
                                 padding_idx=0) for name, table in zip(data["seq_names"], data["seq_tables"])]
    dense = [DenseFeature(str(name)) for name in data["dense_names"]]
    if model_name == "deepfm":
        model = DeepFM(deep_features=sparse + sequences + dense, fm_features=sparse + sequences,
                       mlp_params={"dims": HIDDEN, "activation": "relu", "dropout": 0.0})
    else:
        model = DCN(features=sparse + sequences + dense, n_cross_layers=CROSS_LAYERS,
                    mlp_params={"dims": HIDDEN, "activation": "relu", "dropout": 0.0})
    train, test = columns(data, "train"), columns(data, "test")
    loaders = DataGenerator(train, data["train_label"]).generate_dataloader(
        x_val=test, y_val=data["test_label"], x_test=test, y_test=data["test_label"], batch_size=batch)
    trainer = CTRTrainer(model, optimizer_params={"lr": LR, "weight_decay": 0.0}, n_epoch=1,
                         model_path=tempfile.mkdtemp())
    started = time.perf_counter()
    trainer.fit(loaders[0])
    seconds = time.perf_counter() - started
    return seconds, np.asarray(trainer.predict(trainer.model, loaders[2]))


def deepctr(data: dict, model_name: str, batch: int) -> tuple[float, np.ndarray]:
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DCN, DeepFM

    vocab = dict(zip(map(str, data["sparse_names"]), data["sparse_vocab"].tolist()))
    sparse = [SparseFeat(name, size, embedding_dim=DIM) for name, size in vocab.items()]
    sparse.append(SparseFeat("scenario", int(data["num_scenarios"]), embedding_dim=DIM))
    sequences = [VarLenSparseFeat(SparseFeat(str(name), vocab[str(table)], embedding_dim=DIM,
                                             embedding_name=str(table)), maxlen=int(data["train_seq"].shape[2]),
                                  combiner="mean") for name, table in zip(data["seq_names"], data["seq_tables"])]
    features = sparse + sequences + [DenseFeat(str(name), 1) for name in data["dense_names"]]
    no_l2 = {"l2_reg_linear": 0.0, "l2_reg_embedding": 0.0, "l2_reg_dnn": 0.0, "dnn_hidden_units": tuple(HIDDEN)}
    if model_name == "deepfm":
        model = DeepFM(features, features, **no_l2)
    else:
        model = DCN(features, features, cross_num=CROSS_LAYERS, l2_reg_cross=0.0, **no_l2)
    model.compile(torch.optim.Adam(model.parameters(), lr=LR), "binary_crossentropy")
    train, test = columns(data, "train"), columns(data, "test")
    started = time.perf_counter()
    model.fit(train, data["train_label"], batch_size=batch, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return seconds, model.predict(test, batch_size=8192).ravel()


def main() -> None:
    path, toolkit, model_name, batch, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    torch.set_num_threads(int(threads))  # the same operator threads as mscbench's run
    torch.manual_seed(0)
    data = dict(np.load(path))
    seconds, prob = {"torch-rechub": rechub, "deepctr-torch": deepctr}[toolkit](data, model_name, batch)
    print(json.dumps({"toolkit": toolkit, "model": model_name, "batch": batch,
                      "train_per_second": len(data["train_label"]) / seconds,
                      "test_auc": float(roc_auc_score(data["test_label"], prob)),
                      "peak_mib": peak_mib()}))


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


if __name__ == "__main__":
    main()
