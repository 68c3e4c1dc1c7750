"""The code location's component lists ([tool.dg.project] defs_module): one folder per list, each
with a `defs.yaml` of type `data_migration.ExportsComponent` (`dg scaffold defs
data_migration.ExportsComponent NAME` writes `data_migration/lists/NAME/defs.yaml`). Dagster loads
them (definitions.py, `load_from_defs_folder`); there is no Python here. (Not `defs/`: importing a
subpackage named `defs` would replace the package's `defs`, which `-m data_migration` loads.)

May import: nothing of the project.
"""
