"""Reject bad prompt answers before anything is written (stdlib only).

Cookiecutter renders this file with the answers, then runs it; a non-zero exit
aborts the bake and removes the partial output.
"""

import re
import sys

ANSWERS = {
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "package_name": {{ cookiecutter.package_name | tojson }},
    "base_model": {{ cookiecutter.base_model | tojson }},
    "base_model_revision": {{ cookiecutter.base_model_revision | tojson }},
    "accelerator": {{ cookiecutter.accelerator | tojson }},
    "num_nodes": {{ cookiecutter.num_nodes | tojson }},
    "cloud": {{ cookiecutter.cloud | tojson }},
}

# Each check: (answer key, predicate, what to do instead).
CHECKS = [
    (
        "project_slug",
        lambda v: re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", v),
        "use lowercase letters, digits and single dashes, starting with a letter (e.g. my-finetune)",
    ),
    (
        "package_name",
        lambda v: re.fullmatch(r"[a-z][a-z0-9_]*", v) and v.isidentifier(),
        "use a lowercase Python identifier (e.g. my_finetune)",
    ),
    (
        "base_model",
        lambda v: v == "tiny" or re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", v),
        "answer 'tiny' for the embedded model or a hub id such as org/model",
    ),
    (
        "base_model_revision",
        lambda v: (ANSWERS["base_model"] == "tiny" and v == "")
        or (ANSWERS["base_model"] != "tiny" and re.fullmatch(r"[0-9a-f]{40}", v)),
        "give the 40-hex commit of the hub model (a branch or tag such as 'main' moves); leave it empty for 'tiny'",
    ),
    (
        "accelerator",
        lambda v: re.fullmatch(r"[A-Za-z0-9-]+:[1-9][0-9]*", v),
        "use NAME:COUNT, e.g. H100:1 or A100-80GB:8",
    ),
    (
        "accelerator",
        # GH200 machines are arm64 (Grace); image.yml builds the training image for
        # linux/amd64 only, so such a job could not start its container.
        lambda v: not v.upper().startswith("GH200"),
        "GH200 nodes are arm64 and the training image is built for linux/amd64 only; pick "
        "another accelerator (e.g. H100:1), or add linux/arm64 to image.yml's platforms first",
    ),
    (
        "num_nodes",
        lambda v: re.fullmatch(r"[1-9][0-9]*", v),
        "use a whole number of nodes, 1 or more",
    ),
    (
        "num_nodes",
        lambda v: ANSWERS["cloud"] != "runpod" or v == "1",
        "SkyPilot on RunPod runs single-node jobs only; answer 1, or choose another cloud",
    ),
]


def main() -> int:
    for key, ok, fix in CHECKS:
        value = ANSWERS[key]
        if not ok(value):
            print(f"ft-template: bad answer {key}={value!r}: {fix}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
