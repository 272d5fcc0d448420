# facemtl: multitask learning for facial attributes, from raw data to figures.
#
#   snakemake --cores all --resources gpu=1
#
# runs everything the config asks for. config/config.yaml is the thesis's full
# grid; config/small.yaml runs the same DAG at small scale.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/utkface.smk"
include: "workflow/rules/dyadic.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"


rule all:
    input:
        get_final_outputs(),
    default_target: True
