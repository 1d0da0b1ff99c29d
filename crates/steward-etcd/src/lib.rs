//! The Steward fleet's shared state on etcd (skeleton: the crate that
//! carries etcd-client and the vendored protoc its build script runs).
