//! Host storage for runtimes, kept in the agent's embedded store: the
//! adapter between `steward_host::Storage` (CBOR values) and
//! `steward_store::Store` (opaque bytes). It must never interpret values.

use steward_host::Storage;
use steward_protocol::Value;
use steward_store::Store;
use steward_worker::BoxFuture;

/// [`Storage`] backed by the agent's store; every runtime's namespace is
/// its id, shared by all its versions.
#[derive(Debug, Clone)]
pub(crate) struct StoreStorage(pub(crate) Store);

fn storage_error(error: impl std::fmt::Display) -> steward_host::Error {
    steward_host::Error::Storage(error.to_string())
}

impl Storage for StoreStorage {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, steward_host::Error>> {
        Box::pin(async move {
            match self.0.storage_get(namespace, key).await {
                Ok(Some(bytes)) => Value::from_cbor(bytes).map(Some).map_err(|error| {
                    storage_error(format!(
                        "stored value of {key:?} is not valid CBOR: {error}"
                    ))
                }),
                Ok(None) => Ok(None),
                Err(error) => Err(storage_error(error)),
            }
        })
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), steward_host::Error>> {
        Box::pin(async move {
            self.0
                .storage_set(namespace, key, value.as_cbor().to_vec())
                .await
                .map_err(storage_error)
        })
    }

    fn delete<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), steward_host::Error>> {
        Box::pin(async move {
            self.0
                .storage_delete(namespace, key)
                .await
                .map_err(storage_error)
        })
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, steward_host::Error>> {
        Box::pin(async move {
            self.0
                .storage_list(namespace, prefix)
                .await
                .map_err(storage_error)
        })
    }
}
