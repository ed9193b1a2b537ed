//! Blobs in the server's CAS, and results in its action cache. Every blob read back is hashed
//! again and refused unless it is the digest asked for.

use std::borrow::Cow;
use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::{self as bs, byte_stream_client::ByteStreamClient};
use re::action_cache_client::ActionCacheClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;

use super::error::from_status;
use super::{Remote, RemoteError};
use crate::digest::Sha256Digest;

/// The batch size used when a server sets no limit of its own, below gRPC's default 4 MiB
/// message size.
pub(super) const DEFAULT_MAX_BATCH: usize = 3 << 20;
/// The size of each ByteStream write.
const CHUNK: usize = 1 << 20;

/// A blob's name in a CAS: its SHA-256 and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blob {
    pub digest: Sha256Digest,
    pub size: u64,
}

impl Blob {
    pub fn of(data: &[u8]) -> Self {
        Self {
            digest: Sha256Digest::of(data),
            size: data.len() as u64,
        }
    }

    /// A digest from a server's message: a SHA-256 in hex and a size that is not negative.
    pub(super) fn from_proto(d: &re::Digest) -> Result<Self, String> {
        Ok(Self {
            digest: d
                .hash
                .parse()
                .map_err(|e| format!("digest `{}`: {e}", d.hash))?,
            size: u64::try_from(d.size_bytes).map_err(|_| format!("size {}", d.size_bytes))?,
        })
    }

    pub(super) fn to_proto(self) -> re::Digest {
        re::Digest {
            hash: self.digest.to_hex(),
            size_bytes: self.size as i64,
        }
    }
}

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.digest.to_hex(), self.size)
    }
}

impl Remote {
    fn cas(&self) -> ContentAddressableStorageClient<tonic::transport::Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
    }

    fn url(&self) -> String {
        self.endpoint.to_string()
    }

    /// Which of these blobs the server lacks.
    pub fn find_missing(&self, blobs: &[Blob]) -> Result<Vec<Blob>, RemoteError> {
        let request = re::FindMissingBlobsRequest {
            instance_name: self.endpoint.instance.clone(),
            blob_digests: blobs.iter().map(|b| b.to_proto()).collect(),
            ..Default::default()
        };
        let missing = self
            .rt
            .block_on(self.cas().find_missing_blobs(request))
            .map_err(|s| from_status(&self.endpoint, "FindMissingBlobs", s))?
            .into_inner()
            .missing_blob_digests;
        let missing: std::collections::HashSet<(String, i64)> = missing
            .into_iter()
            .map(|d| (d.hash, d.size_bytes))
            .collect();
        Ok(blobs
            .iter()
            .filter(|b| missing.contains(&(b.digest.to_hex(), b.size as i64)))
            .copied()
            .collect())
    }

    /// Puts blobs into the server's CAS, sending only those it lacks: small ones in batches,
    /// large ones through ByteStream. Returns each blob's name, in order.
    pub fn upload(&self, data: &[&[u8]]) -> Result<Vec<Blob>, RemoteError> {
        let named: Vec<Blob> = data.iter().map(|d| Blob::of(d)).collect();
        self.send_missing(&named, |i| Ok(Cow::Borrowed(data[i])))?;
        Ok(named)
    }

    /// [`Self::upload`] for files named by their blob (objects of the store): each one the
    /// server lacks is read, and sent only if it still hashes as named.
    pub fn upload_files(&self, files: &[(Blob, &Path)]) -> Result<(), RemoteError> {
        let named: Vec<Blob> = files.iter().map(|(b, _)| *b).collect();
        self.send_missing(&named, |i| {
            let (blob, path) = files[i];
            let local = |why: String| RemoteError::Local {
                path: path.display().to_string(),
                why,
            };
            let bytes = std::fs::read(path).map_err(|e| local(e.to_string()))?;
            let found = Blob::of(&bytes);
            if found != blob {
                return Err(local(format!(
                    "it is {found}, not {blob}; run `kata-repro store verify`"
                )));
            }
            Ok(Cow::Owned(bytes))
        })
    }

    /// Sends the blobs of `named` the server lacks, each once, loading the bytes of the i-th
    /// with `load(i)` only when it is sent.
    fn send_missing<'d>(
        &self,
        named: &[Blob],
        load: impl Fn(usize) -> Result<Cow<'d, [u8]>, RemoteError>,
    ) -> Result<(), RemoteError> {
        let mut missing: std::collections::HashSet<Blob> =
            self.find_missing(named)?.into_iter().collect();
        let mut batch: Vec<re::batch_update_blobs_request::Request> = Vec::new();
        let mut batch_size = 0;
        for (i, &blob) in named.iter().enumerate() {
            if !missing.remove(&blob) {
                continue;
            }
            let bytes = load(i)?;
            if bytes.len() > self.max_batch / 2 {
                self.write_stream(blob, &bytes)?;
                continue;
            }
            if batch_size + bytes.len() > self.max_batch / 2 {
                self.write_batch(std::mem::take(&mut batch))?;
                batch_size = 0;
            }
            batch_size += bytes.len();
            batch.push(re::batch_update_blobs_request::Request {
                digest: Some(blob.to_proto()),
                data: bytes.into_owned(),
                ..Default::default()
            });
        }
        if !batch.is_empty() {
            self.write_batch(batch)?;
        }
        Ok(())
    }

    fn write_batch(
        &self,
        requests: Vec<re::batch_update_blobs_request::Request>,
    ) -> Result<(), RemoteError> {
        let request = re::BatchUpdateBlobsRequest {
            instance_name: self.endpoint.instance.clone(),
            requests,
            ..Default::default()
        };
        let responses = self
            .rt
            .block_on(self.cas().batch_update_blobs(request))
            .map_err(|s| from_status(&self.endpoint, "BatchUpdateBlobs", s))?
            .into_inner()
            .responses;
        for r in responses {
            let status = r.status.unwrap_or_default();
            if status.code != 0 {
                let digest = r.digest.unwrap_or_default();
                return Err(RemoteError::Call {
                    url: self.url(),
                    call: "BatchUpdateBlobs",
                    why: format!(
                        "blob {}/{}: code {}: {}",
                        digest.hash, digest.size_bytes, status.code, status.message
                    ),
                });
            }
        }
        Ok(())
    }

    fn write_stream(&self, blob: Blob, bytes: &[u8]) -> Result<(), RemoteError> {
        let resource = self
            .endpoint
            .resource(&format!("uploads/{}/blobs/{blob}", uuid::Uuid::new_v4()));
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![bytes]
        } else {
            bytes.chunks(CHUNK).collect()
        };
        let last = chunks.len() - 1;
        let mut offset = 0;
        let requests: Vec<bs::WriteRequest> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let r = bs::WriteRequest {
                    resource_name: if i == 0 {
                        resource.clone()
                    } else {
                        String::new()
                    },
                    write_offset: offset,
                    finish_write: i == last,
                    data: c.to_vec(),
                };
                offset += c.len() as i64;
                r
            })
            .collect();
        let mut client = ByteStreamClient::new(self.channel.clone());
        let written = self
            .rt
            .block_on(client.write(tokio_stream::iter(requests)))
            .map_err(|s| from_status(&self.endpoint, "ByteStream.Write", s))?
            .into_inner()
            .committed_size;
        if written != blob.size as i64 {
            return Err(RemoteError::Call {
                url: self.url(),
                call: "ByteStream.Write",
                why: format!("blob {blob}: the server committed {written} bytes"),
            });
        }
        Ok(())
    }

    /// Reads a blob back from the server's CAS, hashed again: anything but the blob asked for
    /// is refused.
    pub fn download(&self, blob: Blob) -> Result<Vec<u8>, RemoteError> {
        let data = if blob.size as usize <= self.max_batch / 2 {
            self.read_batch(blob)?
        } else {
            self.read_stream(blob)?
        };
        let found = Blob::of(&data);
        if found != blob {
            return Err(RemoteError::Corrupt {
                url: self.url(),
                expected: blob.digest,
                expected_size: blob.size,
                found: found.digest,
                found_size: found.size,
            });
        }
        Ok(data)
    }

    fn missing(&self, blob: Blob) -> RemoteError {
        RemoteError::Missing {
            url: self.url(),
            digest: blob.digest,
            size: blob.size,
        }
    }

    fn read_batch(&self, blob: Blob) -> Result<Vec<u8>, RemoteError> {
        let request = re::BatchReadBlobsRequest {
            instance_name: self.endpoint.instance.clone(),
            digests: vec![blob.to_proto()],
            ..Default::default()
        };
        let response = self
            .rt
            .block_on(self.cas().batch_read_blobs(request))
            .map_err(|s| from_status(&self.endpoint, "BatchReadBlobs", s))?
            .into_inner()
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| self.missing(blob))?;
        match response.status.unwrap_or_default().code {
            0 => Ok(response.data.to_vec()),
            5 => Err(self.missing(blob)),
            code => Err(RemoteError::Call {
                url: self.url(),
                call: "BatchReadBlobs",
                why: format!("blob {blob}: code {code}"),
            }),
        }
    }

    fn read_stream(&self, blob: Blob) -> Result<Vec<u8>, RemoteError> {
        let request = bs::ReadRequest {
            resource_name: self.endpoint.resource(&format!("blobs/{blob}")),
            read_offset: 0,
            read_limit: 0,
        };
        let mut client = ByteStreamClient::new(self.channel.clone());
        self.rt.block_on(async {
            let mut stream = client.read(request).await.map_err(|s| match s.code() {
                tonic::Code::NotFound => self.missing(blob),
                _ => from_status(&self.endpoint, "ByteStream.Read", s),
            })?;
            let mut data = Vec::with_capacity(blob.size as usize);
            while let Some(chunk) = stream
                .get_mut()
                .message()
                .await
                .map_err(|s| from_status(&self.endpoint, "ByteStream.Read", s))?
            {
                data.extend_from_slice(&chunk.data);
                if data.len() as u64 > blob.size {
                    break;
                }
            }
            Ok(data)
        })
    }

    /// The action cache's result for an action, if it has one.
    pub fn get_action_result(&self, action: Blob) -> Result<Option<re::ActionResult>, RemoteError> {
        let request = re::GetActionResultRequest {
            instance_name: self.endpoint.instance.clone(),
            action_digest: Some(action.to_proto()),
            ..Default::default()
        };
        let mut client = ActionCacheClient::new(self.channel.clone());
        match self.rt.block_on(client.get_action_result(request)) {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(from_status(&self.endpoint, "GetActionResult", s)),
        }
    }

    /// Records an action's result in the server's action cache.
    pub fn update_action_result(
        &self,
        action: Blob,
        result: re::ActionResult,
    ) -> Result<(), RemoteError> {
        let request = re::UpdateActionResultRequest {
            instance_name: self.endpoint.instance.clone(),
            action_digest: Some(action.to_proto()),
            action_result: Some(result),
            ..Default::default()
        };
        let mut client = ActionCacheClient::new(self.channel.clone());
        self.rt
            .block_on(client.update_action_result(request))
            .map_err(|s| from_status(&self.endpoint, "UpdateActionResult", s))?;
        Ok(())
    }
}
