#!/usr/bin/env bash
# The experiment binaries reject bad flags with an InvalidArgument status
# naming the flag and its value (exit 1, no abort), before loading data or
# training; valid flags still run (a 2-step toy2d, a 1-step earth on the
# shipped volcano catalogue found from an unrelated working directory, a
# 2-step torus, a 2-step sphere_target).
set -uo pipefail
root=$PWD
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/flags.XXXXXX")
cd "$tmp"  # no data/setup_data.sh here: nothing gets installed
export FLOWTAPE_DATA_DIR="$tmp/data"  # empty: MNIST counts as missing
fails=0

# expect BINARY 'stderr substring' flags...: exit 1 and the substring.
expect() {
  local bin=$1 want=$2
  shift 2
  local err
  err=$("$root/$bin" "$@" 2>&1 >/dev/null)
  local rc=$?
  if [[ $rc -ne 1 || $err != *"$want"* ]]; then
    echo "FAIL: $bin $* -> exit $rc, stderr: $err (want: $want)"
    fails=$((fails + 1))
  fi
}

expect experiments/toy2d "toy2d: INVALID_ARGUMENT: --steps=0: must be > 0" --steps=0
expect experiments/toy2d "--steps=-3: must be > 0" --steps=-3
expect experiments/toy2d "--lr=nan: must be finite and > 0" --lr=nan
expect experiments/toy2d "--lr=0: must be finite and > 0" --lr=0
expect experiments/toy2d "--batch=0" --batch=0 --layers=-1
expect experiments/toy2d "--layers=-1" --batch=0 --layers=-1
expect experiments/toy2d "--n_train=0" --n_train=0
expect experiments/toy2d "--components=0: must be in [1, 4096]" --components=0
expect experiments/toy2d "--base=mixture: want family, gmm, gmm_full or resampled" --base=mixture
expect experiments/toy2d "--hidden: bad size '0'" --hidden=64,0
expect experiments/images "--steps=0: must be -1 (the config's) or > 0" --steps=0
expect experiments/images "--n_test=-5" --n_test=-5
expect experiments/images "--lr=-2: must be -1" --lr=-2
expect experiments/images "--alpha=0.5: must be in [0, 0.5)" --alpha=0.5
expect experiments/ood "--n_train=0" --n_train=0
expect experiments/rate_distortion "rate_distortion: INVALID_ARGUMENT: --steps=0: must be > 0" --steps=0
expect experiments/rate_distortion "--data=digits: must be mnist | fashion" --data=digits
expect experiments/rate_distortion "--deltas: bad item 'x' (a comma-separated list of decimals > 0)" --deltas=0.5,x
expect experiments/rate_distortion "--deltas: bad item '0'" --deltas=0
expect experiments/rate_distortion "--rd_deltas: bad item '-1'" --rd_deltas=1,-1
expect experiments/rate_distortion "--rd_steps=0: must be > 0" --rd_steps=0
expect experiments/rate_distortion "--rd_proxy=round: must be noise | ste" --rd_proxy=round
expect experiments/rate_distortion "--rd_lambda_scale=nan: must be finite, > 0" --rd_lambda_scale=nan
expect experiments/rate_distortion "--batch=1000000000000 (--flow=realnvp): the run needs" --batch=1000000000000
expect experiments/calibration "calibration: INVALID_ARGUMENT: --epochs=0" --epochs=0
expect experiments/calibration "--calib_steps=-1" --calib_steps=-1
expect benchmarks/earth "--seeds=0: must be > 0" --seeds=0
expect benchmarks/earth "--datasets: unknown 'mars'" --datasets=mars
expect benchmarks/earth "--models: unknown 'kent'" --models=kent
expect benchmarks/earth "--first_seed=-1: must be in [0, 1e6]" --first_seed=-1
expect benchmarks/earth "--rfm_t_power=-2: must be in [0, 100]" --rfm_t_power=-2
expect benchmarks/earth "--rfm_coupling: " --rfm_coupling=greedy
expect benchmarks/earth "--rfm_coupling=exact_ot: the batch (1024) must be <= 512" --rfm_coupling=exact_ot --rfm_batch=1024
expect benchmarks/earth "--recursive_blocks=65: must be in [0, 64]" --recursive_blocks=65 --models=recursive
expect benchmarks/earth "--recursive_lr=nan: must be finite, in [0, 1)" --recursive_lr=nan --models=recursive
expect benchmarks/earth "--recursive_weight_decay=-0.5: must be -1 or in [0, 1)" --recursive_weight_decay=-0.5 --models=recursive
expect benchmarks/torus "--bins=1: must be in [2, 256]" --bins=1
expect benchmarks/torus "--lr=nan: must be in (0, 1)" --lr=nan
expect benchmarks/torus "unknown torus target 'bimodal'" --targets=bimodal
expect benchmarks/torus "--models: unknown 'maf'" --models=maf
expect benchmarks/sphere_target "--components=0: must be in [1, 256]" --components=0
expect benchmarks/sphere_target "unknown S^2 target 's3'" --target=s3
expect benchmarks/sphere_target "--models: unknown 'maf'" --models=maf

# Sizes whose memory cannot exist are refused before anything is allocated
# (they used to abort in tensor.cc or run until memory ran out), with the
# flags named; --max_memory_gb overrides the limit (physical memory).
mem="above the memory limit"
expect experiments/toy2d "--hidden=100000,100000 --batch=256 --n_train=30000: the run needs about" --hidden=100000,100000
expect experiments/toy2d "$mem" --hidden=300000000
expect experiments/toy2d "--n_train=1000000000000: the run needs" --n_train=1000000000000
expect experiments/toy2d "--layers=1000000000 " --layers=1000000000
expect experiments/toy2d "$mem of 0.0001 GiB (--max_memory_gb" --max_memory_gb=0.0001
expect experiments/toy2d "--max_memory_gb=-1: must be finite and >= 0" --max_memory_gb=-1
expect experiments/toy2d "--hidden: bad size '99999999999999999999'" --hidden=99999999999999999999
expect experiments/toy2d "--hidden: bad size ''" --hidden=64,,64
expect experiments/images "--batch=1000000000000 (--flow=realnvp): the run needs" --batch=1000000000000
expect experiments/ood "--flow=glow: the run needs" --max_memory_gb=0.001
expect benchmarks/earth "--components=1000000000 --layers=2: the run needs" --components=1000000000
expect benchmarks/earth "--layers=1000000000: the run needs" --layers=1000000000
expect benchmarks/earth "--recursive_hidden=4096 --recursive_batch=512: the run needs" \
  --models=recursive_mixture --recursive_components=64 --recursive_blocks=64 \
  --recursive_hidden=4096 --max_memory_gb=1
expect benchmarks/earth "--rfm_width=4096 --rfm_depth=16 --rfm_fourier=64 --rfm_batch=256: the run needs" \
  --models=rfm --rfm_width=4096 --rfm_depth=16 --max_memory_gb=1
expect benchmarks/anode_spheres "anode_spheres: INVALID_ARGUMENT: --train_size=0: must be > 0" --train_size=0
expect benchmarks/anode_spheres "--lr=nan: must be finite and > 0" --lr=nan
expect benchmarks/anode_spheres "--batch=1000000000000 --train_size=2000: the run needs" --batch=1000000000000
expect benchmarks/rnode_vs_ffjord "rnode_vs_ffjord: INVALID_ARGUMENT: --batch=0: must be > 0" --batch=0
expect benchmarks/snf_energies "snf_energies: INVALID_ARGUMENT: --steps=0: must be > 0" --steps=0
expect benchmarks/snf_energies "--models: unknown model 'foo'" --models=foo
expect benchmarks/snf_energies "--energies: unknown energy 'u9'" --energies=u9
expect benchmarks/snf_energies "--batch=1000000000000 --blocks=3 --hidden=32 --mcmc_steps=5: the run needs" --batch=1000000000000
expect benchmarks/rnode_vs_ffjord "--trace=bogus: must be exact or hutchinson" --trace=bogus
expect benchmarks/rnode_vs_ffjord "--test_size=1000000000000: the run needs" --test_size=1000000000000
expect benchmarks/earth "--rfm_width=-1: must be in [0, 4096]" --rfm_width=-1 --models=rfm
expect benchmarks/earth "--rfm_depth=17: must be in [0, 16]" --rfm_depth=17 --models=rfm
expect benchmarks/earth "--rfm_lr=nan: must be finite, in [0, 1)" --rfm_lr=nan --models=rfm
expect benchmarks/earth "--rfm_activation: unknown activation 'cube'" --rfm_activation=cube --models=rfm
expect benchmarks/cnf_training_methods "--fm_steps=-1: must be >= 0 (0: --steps)" --fm_steps=-1
expect benchmarks/cnf_training_methods "--data=digitz: must be toy densities (data/toy2d.h) or digits" --data=digitz
expect benchmarks/cnf_training_methods "--sample_tols: bad item '1e-12' (a comma-separated list of decimals in [1e-9, 1))" --sample_tols=1e-3,1e-12
expect benchmarks/cnf_training_methods "--sample_tols: bad item 'nan'" --sample_tols=nan
expect benchmarks/cnf_training_methods "--sample_tols: bad item '1e-7' (a comma-separated list of decimals in [1e-6, 1) (float32))" --dtype=f32 --sample_tols=1e-3,1e-7
expect benchmarks/cnf_training_methods "--euler_steps: bad item '0' (a comma-separated list of integers in [1, 100000])" --euler_steps=1,0
expect benchmarks/cnf_training_methods "--first_step=2: must be in [0, 1]" --first_step=2
expect benchmarks/cnf_training_methods "--fm_ema_decay=1: must be in [0, 1)" --fm_ema_decay=1
expect benchmarks/cnf_training_methods "--fm_lr_schedule=linear: must be constant or cosine" --fm_lr_schedule=linear
expect benchmarks/cnf_training_methods "--fm_warmup=1: must be in [0, 1)" --fm_warmup=1
expect benchmarks/cnf_training_methods "--fm_batch=600: must be in [1, 512]" --fm_batch=600
expect benchmarks/cnf_training_methods "--otcfm_batch=-1: must be in [1, 512]" --otcfm_batch=-1
expect benchmarks/cnf_training_methods "--otcfm_batch=600: must be in [1, 512]" --otcfm_batch=600
expect benchmarks/cnf_training_methods "--otcfm_batch=3000: must be in [1, 2048] (the Sinkhorn" --otcfm_batch=3000 --coupling=sinkhorn
expect benchmarks/cnf_training_methods "--fm_path=diffusion: must be ot or vp" --fm_path=diffusion
expect benchmarks/cnf_training_methods "--fm_sigma_min=0: must be in (0, 1) (the VP path)" --fm_path=vp --fm_sigma_min=0
expect benchmarks/cnf_training_methods "--coupling=hungarian: must be exact or sinkhorn" --coupling=hungarian
expect benchmarks/cnf_training_methods "--sinkhorn_epsilon=0: must be finite and > 0" --sinkhorn_epsilon=0
expect benchmarks/cnf_training_methods "--sinkhorn_max_iters=0: must be in [1, 1e9]" --sinkhorn_max_iters=0
expect benchmarks/cnf_training_methods "--sinkhorn_tol=nan: must be finite and > 0" --sinkhorn_tol=nan

# Catalogues too small for a nonempty 80/10/10 split: a clear error (a
# one-row catalogue used to crash the mixture model, and 2-9 rows trained
# with the training loss reported as validation).
mkdir -p "$tmp/tiny"
echo "10,20" >"$tmp/tiny/volcano.csv"
expect benchmarks/earth "volcano.csv: 1 points; the 80/10/10 split needs at least 10" \
  --data_dir="$tmp/tiny" --datasets=volcano --models=mixture --seeds=1 --steps=1 --maps=false
for i in 1 2 3 4 5 6 7 8 9; do echo "$i,$i"; done >"$tmp/tiny/volcano.csv"
expect benchmarks/earth "9 points; the 80/10/10 split needs at least 10" \
  --data_dir="$tmp/tiny" --datasets=volcano --models=affine --seeds=1 --steps=1 --maps=false

# Valid flags run.
out=$("$root/experiments/toy2d" --steps=2 --n_train=64 --layers=2 --hidden=8 2>&1)
[[ $? -eq 0 && $out == *"test NLL"* ]] || {
  echo "FAIL: toy2d with valid flags: $out"
  fails=$((fails + 1))
}
out=$("$root/benchmarks/earth" --seeds=1 --steps=1 --datasets=volcano \
  --models=affine --maps=false 2>&1)
[[ $? -eq 0 && $out == *"volcano"*"seed 0"* ]] || {
  echo "FAIL: earth on the shipped volcano data: $out"
  fails=$((fails + 1))
}
out=$("$root/benchmarks/earth" --seeds=1 --steps=2 --datasets=volcano \
  --models=recursive --recursive_blocks=1 --recursive_bins=4 \
  --recursive_hidden=8 --recursive_batch=64 --maps=false \
  --out_dir="$tmp/recursive" 2>&1)
[[ $? -eq 0 && $out == *"volcano"*"recursive"*"seed 0"*"recursive (spline K=4) x1"* &&
  -s $tmp/recursive/volcano_recursive.ftm ]] || {
  echo "FAIL: earth --models=recursive on the shipped volcano data: $out"
  fails=$((fails + 1))
}
out=$("$root/benchmarks/earth" --seeds=1 --steps=2 --datasets=volcano \
  --models=recursive_mixture --recursive_components=2 --recursive_blocks=1 \
  --recursive_bins=4 --recursive_hidden=8 --recursive_batch=64 \
  --recursive_weight_decay=0.1 --maps=false --out_dir="$tmp/rmix" 2>&1)
[[ $? -eq 0 && $out == *"volcano"*"recursive_mixture"*"seed 0"*"Mixture 2 x recursive (K=4) x1"* &&
  -s $tmp/rmix/volcano_recursive_mixture.ftm ]] || {
  echo "FAIL: earth --models=recursive_mixture (AdamW) on the shipped volcano data: $out"
  fails=$((fails + 1))
}
out=$("$root/benchmarks/earth" --seeds=1 --steps=2 --datasets=volcano \
  --models=rfm --rfm_width=8 --rfm_depth=1 --maps=false --out_dir="$tmp/rfm" 2>&1)
[[ $? -eq 0 && $out == *"volcano"*"rfm"*"seed 0"*"Riemannian flow matching 1 x 8"* &&
  -s $tmp/rfm/volcano_rfm.ftm ]] || {
  echo "FAIL: earth --models=rfm on the shipped volcano data: $out"
  fails=$((fails + 1))
}
out=$("$root/benchmarks/torus" --seeds=1 --steps=2 --eval_samples=100 \
  --targets=correlated --models=ar_mobius 2>&1)
[[ $? -eq 0 && $out == *"correlated"*"seed 0: KL"* ]] || {
  echo "FAIL: torus with valid flags: $out"
  fails=$((fails + 1))
}
out=$("$root/benchmarks/sphere_target" --seeds=1 --steps=2 --eval_samples=100 \
  --models=mobius --bins=4 --components=2 --hidden=4 2>&1)
[[ $? -eq 0 && $out == *"mobius  seed 0: KL"* ]] || {
  echo "FAIL: sphere_target with valid flags: $out"
  fails=$((fails + 1))
}

rm -rf "$tmp"
[[ $fails -eq 0 ]] && echo "PASS" || exit 1
