#!/usr/bin/env bash
# GATI's figures on a GPU machine (issue 17), or on a CPU with --device cpu; results under $OUT.
#
#   scripts/gpu_gati.sh [--device cuda|cpu] [--tiny]
#
# Each part is spidercache.bench.gati.run (the `spidercache gati bench` code) with its own settings:
#   r18    ResNet-18, Fashion-MNIST 28 px, base trained until validation accuracy stops improving;
#          epsilons 0.5/1/2, batch 1 and 32; CPU latency (1 thread) and, with cuda, GPU latency
#          against the GPU base (units and heads re-timed on the GPU, composition chosen with those costs);
#          batched serving at 8 clients, online retraining on a shifting stream
#   r34    ResNet-34, same data, epsilon 1, batch 1
#   r50    ResNet-50, same data, epsilon 1, batch 1
#   pairs  ResNet-18 on fashion-pairs (100 classes, 32 px; a stand-in for CIFAR-100), epsilon 1, batch 1
#   px64   ResNet-18 with the ImageNet stem on Fashion-MNIST upscaled to 64 px (a stand-in), epsilon 1, batch 1
# Training and activation passes run on the GPU when --device cuda; the batch-1 CPU latency is
# timed with one torch thread as on the CPU machines. A part that fails or runs past its share
# of time is written as {"error": ...} and the others go on. Sized for <= 8 minutes on one H200
# with 16 CPU cores. --tiny: a few hundred images and a small network per part (a check, not figures).
#
# Fashion-MNIST: $FMNIST, else /usr/share/datasets/fashion-mnist, else ./.gati-data/fashion-mnist
# (copy the four .gz files there and carry that folder to a machine without the Debian package).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
TINY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="${2:-}"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    *) echo "error: unknown argument $1 (use --device cuda|cpu, --tiny)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "error: --device must be cuda or cpu" >&2; exit 2 ;; esac
OUT="${OUT:-$PWD/gati-gpu-out}"
mkdir -p "$OUT"
FM=""
for d in "${FMNIST:-}" /usr/share/datasets/fashion-mnist "$PWD/.gati-data/fashion-mnist"; do
  if [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ]; then FM="$d"; break; fi
done
if [ -z "$FM" ]; then echo "error: Fashion-MNIST not found (set FMNIST=folder with the four .gz files)" >&2; exit 2; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
# the whole run stops at $GATI_LIMIT seconds (default 470); gati_gpu.json holds every part finished by then
exec timeout "${GATI_LIMIT:-470}" "$PY" - "$DEVICE" "$TINY" "$FM" "$OUT" <<'PYEOF'
import json, os, sys, time, traceback
import torch
from spidercache.bench import gati

device, tiny, fm, out = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
if device == "cuda" and not torch.cuda.is_available():
    print("error: --device cuda: no CUDA GPU is visible to torch", file=sys.stderr)
    sys.exit(2)
try:  # the RPC and serving parts need grpcio and a protobuf new enough for the generated code
    import spidercache.inference.serve  # noqa: F401
    rpc_ok, rpc_why = True, ""
except Exception as exc:
    rpc_ok, rpc_why = False, f"{type(exc).__name__}: {exc}"
    print(f"RPC and serving parts not run: {rpc_why}", file=sys.stderr)
started = time.time()
common = dict(data_root=fm, work_dir=os.path.join(out, "work"), threads=1, train_device=device,
              gpu=device == "cuda", rpc=False, serving=False, stream=False, converge=True, epochs=15, lr=0.05,
              train_samples=20000, head_samples=10000, val_samples=5000, requests=None)
common.pop("requests")
parts = {
    "r18": dict(model="resnet18", epsilons="0.5,1,2", batches="1,32", requests=300,
                rpc=rpc_ok, serving=rpc_ok, stream=True, stream_requests=3000),
    "r34": dict(model="resnet34", epsilons="1", batches="1", requests=200, head_epochs=4,
                variants="pool2_mlp,pool4_mlp,pool7_mlp"),
    "r50": dict(model="resnet50", epsilons="1", batches="1", requests=200, lr=0.02, head_epochs=4,
                variants="pool2_mlp,pool4_mlp,pool7_mlp"),
    "pairs": dict(model="resnet18", dataset="fashion-pairs", epsilons="1", batches="1", requests=200,
                  head_epochs=4),
    "px64": dict(model="resnet18", stem="imagenet", image_size=64, epsilons="1", batches="1",
                 requests=200, head_epochs=4),
}
budget = {"r18": 170, "r34": 90, "r50": 110, "pairs": 60, "px64": 60}  # seconds, a guide for the order only
results = {}


def write_md():
    lines = [f"# GATI figures ({device}{', tiny check' if tiny else ''})", ""]
    for name, res in results.items():
        if "error" in res:
            lines += [f"## {name}: not run ({res['error']})", ""]
            continue
        base = next(r for r in res["rows"] if r["section"] == "base")
        lines += [f"## {name}: {base['model']} ({base['stem']} stem) on {base['dataset']}, input "
                  f"{'x'.join(map(str, base['input_shape']))}", "",
                  f"base test accuracy {base['test_accuracy']:.2f}% after {base['epochs']} epochs (best epoch "
                  f"{base['best_epoch']}, {'converged' if base['converged'] else 'NOT converged'}), "
                  f"{res['seconds']:.0f} s for this part", "",
                  "| device | batch | ε | base ms | GATI ms | speedup | base acc | GATI acc | loss | heads |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in res["rows"] if r["section"] == "latency"):
            lines.append(f"| {r['device']} | {r['batch']} | {r['epsilon']:g} | {r['base_mean_ms']:.3f} | "
                         f"{r['gati_mean_ms']:.3f} | {r['speedup']:.2f}x | {r['base_accuracy']:.2f} | "
                         f"{r['gati_accuracy']:.2f} | {r['accuracy_loss']:+.2f} | {' '.join(r['heads']) or '-'} |")
        for r in (r for r in res["rows"] if r["section"] == "serving"):
            lines.append(f"\nserving {r['mode']} (window {r['window_ms']:g} ms), {r['clients']} clients: "
                         f"{r['throughput_rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                         f"mean batch {r['mean_batch']:.2f}, CPU {r['cpu_ms_per_request']:.2f} ms/request "
                         f"(torch threads {r['torch_threads']}, chunks {r['parallel']})")
        for r in (r for r in res["rows"] if r["section"] == "serving_summary"):
            lines.append(f"\nserving round {r['round']}: batched / batch-1 throughput {r['throughput_ratio']:.2f}x, "
                         f"CPU per request {r['cpu_per_request_ratio']:.2f}x fewer")
        for r in (r for r in res["rows"] if r["section"] == "retraining" and r["window"] is None):
            lines.append(f"\nstream {r['mode']}: hit rate {r['hit_rate_before_shift']:.1f}% -> "
                         f"{r['hit_rate_after_shift']:.1f}% (last window {r['hit_rate_last_window']:.1f}%), accuracy "
                         f"{r['accuracy_before_shift']:.2f}% -> {r['accuracy_after_shift']:.2f}%, "
                         f"{r['retrains']} retrains, {r['swaps']} swapped, retrain s {r['retrain_seconds']}, "
                         f"ms while retraining {r['mean_ms_while_retraining']} vs {r['mean_ms_otherwise']}")
        lines.append("")
    with open(os.path.join(out, "gati_gpu.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


for name, part in parts.items():
    opts = dict(common, **part)
    if tiny:
        opts.update(model="small" if name != "px64" else "resnet18", epochs=3, train_samples=400,
                    head_samples=200, val_samples=200, test_samples=300, requests=20, head_epochs=1,
                    stream_requests=300, clients=4, variants="gap_linear,pool2_mlp")
    t0 = time.time()
    print(f"== {name}: {opts['model']} on {opts.get('dataset', 'fashion-mnist')} "
          f"(elapsed {t0 - started:.0f} s, guide {budget[name]} s)", file=sys.stderr)
    try:
        rows = gati.run(log=lambda m: print(f"  [{name}] {m}", file=sys.stderr), **opts)
        results[name] = {"rows": rows, "seconds": time.time() - t0}
    except Exception as exc:
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "seconds": time.time() - t0}
    with open(os.path.join(out, "gati_gpu.json"), "w") as f:  # after every part: a killed run keeps the rest
        json.dump({"device": device, "tiny": tiny, "rpc_not_run": rpc_why,
                   "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                   "cpu_count": os.cpu_count(), "results": results}, f, indent=1, default=float)
    write_md()

lines = write_md()
print("\n".join(lines))
print(f"total {time.time() - started:.0f} s", file=sys.stderr)
PYEOF
