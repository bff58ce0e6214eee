//! OCI registries (distribution API), CNCF ModelPack artifacts.
