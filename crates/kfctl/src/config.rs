//! The kfctl.yaml schema and its validation.
