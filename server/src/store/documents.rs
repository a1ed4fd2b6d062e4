//! Small admin documents (local users, settings), stored as JSON by kind and id.

use super::StoreError;

/// JSON documents by kind and id.
#[async_trait::async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    async fn put_doc(&self, kind: &str, id: &str, json: &str) -> Result<(), StoreError>;
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError>;
    async fn list_docs(&self, kind: &str) -> Result<Vec<String>, StoreError>;
    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError>;
}
