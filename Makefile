# Two entry points for a fresh clone:
#   make train   virtual environment, packages, the bundled corpus, then a
#                few epochs of the reference model into checkpoints/
#   make test    virtual environment with the test packages, then the tests
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
EPOCHS ?= 3
RUN ?= checkpoints/fortunes-$(shell date +%Y%m%d-%H%M%S)
PYTEST_ARGS ?=

.PHONY: train test data venv bench clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

data: data/fortunes-split/train.txt

data/fortunes-split/train.txt: | $(VENV)/.installed
	$(PY) prepare_data.py

train: $(VENV)/.installed data
	$(PY) train.py --data-dir data/fortunes-split --checkpoint-dir "$(RUN)" \
		--num-epochs $(EPOCHS)

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

clean-venv:
	rm -rf $(VENV)
