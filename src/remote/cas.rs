//! Blobs in the server's CAS, and results in its action cache. Every blob read back is hashed
//! again and refused unless it is the digest asked for.

use std::borrow::Cow;
use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::{self as bs, byte_stream_client::ByteStreamClient};
use re::action_cache_client::ActionCacheClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::from_status;
use super::{Remote, RemoteError};
use crate::digest::{HashingWriter, Sha256Digest};

/// The batch size used when a server sets no limit of its own, below gRPC's default 4 MiB
/// message size.
pub(super) const DEFAULT_MAX_BATCH: usize = 3 << 20;
/// The size of each ByteStream write.
const CHUNK: usize = 1 << 20;
/// How often a ByteStream read or write whose connection broke is made again, in a row.
const STREAM_RETRIES: u32 = 2;

/// Why a streamed call failed: a connection that broke (worth calling again), or anything else.
enum Broken {
    Yes(tonic::Status),
    No(RemoteError),
}

impl Broken {
    fn of(e: &super::Endpoint, call: &'static str, s: tonic::Status) -> Self {
        if super::broken(&s) {
            Broken::Yes(s)
        } else {
            Broken::No(from_status(e, call, s))
        }
    }
}

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

/// What is sent for a blob: bytes in memory, or a file read as it is sent.
enum Payload<'d> {
    Bytes(Cow<'d, [u8]>),
    File(&'d Path),
}

/// The WriteRequests of one ByteStream upload, read from `reader` a chunk at a time as the
/// transport asks for them. A read that fails ends them early (the server then refuses the
/// upload) and is kept in `failed`.
struct WriteChunks<R> {
    reader: R,
    resource: String,
    offset: u64,
    size: u64,
    done: bool,
    failed: Arc<Mutex<Option<std::io::Error>>>,
}

impl<R: std::io::Read> WriteChunks<R> {
    fn new(reader: R, resource: String, size: u64) -> Self {
        Self {
            reader,
            resource,
            offset: 0,
            size,
            done: false,
            failed: Arc::default(),
        }
    }
}

impl<R: std::io::Read> Iterator for WriteChunks<R> {
    type Item = bs::WriteRequest;

    fn next(&mut self) -> Option<bs::WriteRequest> {
        if self.done {
            return None;
        }
        let len = (self.size - self.offset).min(CHUNK as u64) as usize;
        let mut data = vec![0; len];
        if let Err(e) = self.reader.read_exact(&mut data) {
            *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            self.done = true;
            return None;
        }
        let at = self.offset;
        self.offset += len as u64;
        self.done = self.offset == self.size;
        Some(bs::WriteRequest {
            resource_name: if at == 0 {
                self.resource.clone()
            } else {
                String::new()
            },
            write_offset: at as i64,
            finish_write: self.done,
            data,
        })
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
            .unary(request, |r| async move {
                self.cas().find_missing_blobs(r).await
            })
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
        self.send_missing(&named, |i| Ok(Payload::Bytes(Cow::Borrowed(data[i]))))?;
        Ok(named)
    }

    /// [`Self::upload`] for files named by their blob (objects of the store): each one the
    /// server lacks is hashed, and sent only if it still is the blob named. A large file is
    /// read a chunk at a time as it is sent, never whole.
    pub fn upload_files(&self, files: &[(Blob, &Path)]) -> Result<(), RemoteError> {
        let named: Vec<Blob> = files.iter().map(|(b, _)| *b).collect();
        self.send_missing(&named, |i| {
            let (blob, path) = files[i];
            let local = |why: String| RemoteError::Local {
                path: path.display().to_string(),
                why,
            };
            let size = std::fs::metadata(path)
                .map_err(|e| local(e.to_string()))?
                .len();
            let digest = Sha256Digest::of_file(path).map_err(|e| local(e.to_string()))?;
            let found = Blob { digest, size };
            if found != blob {
                return Err(local(format!(
                    "it is {found}, not {blob}; run `kata-repro store verify`"
                )));
            }
            Ok(Payload::File(path))
        })
    }

    /// Sends the blobs of `named` the server lacks, each once, loading the i-th with `load(i)`
    /// only when it is sent.
    fn send_missing<'d>(
        &self,
        named: &[Blob],
        load: impl Fn(usize) -> Result<Payload<'d>, RemoteError>,
    ) -> Result<(), RemoteError> {
        let mut missing: std::collections::HashSet<Blob> =
            self.find_missing(named)?.into_iter().collect();
        let mut batch: Vec<re::batch_update_blobs_request::Request> = Vec::new();
        let mut batch_size = 0;
        let small = self.max_batch / 2;
        for (i, &blob) in named.iter().enumerate() {
            if !missing.remove(&blob) {
                continue;
            }
            let bytes = match load(i)? {
                Payload::File(path) if blob.size as usize > small => {
                    let open = || {
                        let file = std::fs::File::open(path).map_err(|e| RemoteError::Local {
                            path: path.display().to_string(),
                            why: e.to_string(),
                        })?;
                        Ok(Box::new(file) as Box<dyn std::io::Read + Send>)
                    };
                    self.write_stream(blob, open, path)?;
                    continue;
                }
                Payload::File(path) => {
                    Cow::Owned(std::fs::read(path).map_err(|e| RemoteError::Local {
                        path: path.display().to_string(),
                        why: e.to_string(),
                    })?)
                }
                Payload::Bytes(bytes) => bytes,
            };
            if bytes.len() > small {
                let bytes: Arc<[u8]> = bytes.into_owned().into();
                let open = || {
                    let reader = std::io::Cursor::new(bytes.clone());
                    Ok(Box::new(reader) as Box<dyn std::io::Read + Send>)
                };
                self.write_stream(blob, open, Path::new("(memory)"))?;
                continue;
            }
            if batch_size + bytes.len() > small {
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
            .unary(request, |r| async move {
                self.cas().batch_update_blobs(r).await
            })
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

    /// Sends `blob`, read from what `open` gives a chunk at a time, through ByteStream; `what`
    /// names the reader in errors. A connection that breaks mid-way is made again and the blob
    /// sent again from its start under a new upload name, at most [`STREAM_RETRIES`] times.
    fn write_stream(
        &self,
        blob: Blob,
        open: impl Fn() -> Result<Box<dyn std::io::Read + Send>, RemoteError>,
        what: &Path,
    ) -> Result<(), RemoteError> {
        let mut attempt = 0;
        loop {
            match self.write_once(blob, open()?, what) {
                Err(Broken::Yes(_)) if attempt < STREAM_RETRIES => {
                    attempt += 1;
                    Self::pause(attempt);
                }
                Err(Broken::Yes(s)) => {
                    return Err(from_status(&self.endpoint, "ByteStream.Write", s));
                }
                Err(Broken::No(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    fn write_once(
        &self,
        blob: Blob,
        reader: Box<dyn std::io::Read + Send>,
        what: &Path,
    ) -> Result<(), Broken> {
        let resource = self
            .endpoint
            .resource(&format!("uploads/{}/blobs/{blob}", uuid::Uuid::new_v4()));
        let chunks = WriteChunks::new(reader, resource, blob.size);
        let failed = chunks.failed.clone();
        let mut client = ByteStreamClient::new(self.channel.clone());
        let sent = self.rt.block_on(client.write(tokio_stream::iter(chunks)));
        if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(Broken::No(RemoteError::Local {
                path: what.display().to_string(),
                why: e.to_string(),
            }));
        }
        let written = sent
            .map_err(|s| Broken::of(&self.endpoint, "ByteStream.Write", s))?
            .into_inner()
            .committed_size;
        if written != blob.size as i64 {
            return Err(Broken::No(RemoteError::Call {
                url: self.url(),
                call: "ByteStream.Write",
                why: format!("blob {blob}: the server committed {written} bytes"),
            }));
        }
        Ok(())
    }

    /// Waits before calling again after a broken connection, as [`Remote::unary`] does.
    fn pause(attempt: u32) {
        std::thread::sleep(Duration::from_millis(500 << (attempt - 1)));
    }

    /// Reads a blob back from the server's CAS, hashed again: anything but the blob asked for
    /// is refused.
    pub fn download(&self, blob: Blob) -> Result<Vec<u8>, RemoteError> {
        let mut data = Vec::new();
        self.download_into(blob, &mut data)?;
        Ok(data)
    }

    /// [`Self::download`] into `out`, a chunk at a time, hashed as it is written. When it
    /// fails, what `out` got is not the blob and must be thrown away.
    pub fn download_into(&self, blob: Blob, out: &mut dyn Write) -> Result<(), RemoteError> {
        let mut hashing = HashingWriter::new(out);
        if blob.size as usize <= self.max_batch / 2 {
            let data = self.read_batch(blob)?;
            self.put(&mut hashing, &data)?;
        } else {
            self.read_stream(blob, &mut hashing)?;
        }
        let (digest, size, _) = hashing.finish();
        let found = Blob { digest, size };
        if found != blob {
            return Err(RemoteError::Corrupt {
                url: self.url(),
                expected: blob.digest,
                expected_size: blob.size,
                found: found.digest,
                found_size: found.size,
            });
        }
        Ok(())
    }

    fn put(&self, out: &mut dyn Write, data: &[u8]) -> Result<(), RemoteError> {
        out.write_all(data).map_err(|e| RemoteError::Local {
            path: "the download's destination".into(),
            why: e.to_string(),
        })
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
            .unary(
                request,
                |r| async move { self.cas().batch_read_blobs(r).await },
            )
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

    /// Reads `blob` through ByteStream into `out`, stopping once more than its size came. A
    /// connection that breaks mid-way is made again and the read resumed where it stopped, at
    /// most [`STREAM_RETRIES`] times in a row.
    fn read_stream(&self, blob: Blob, out: &mut dyn Write) -> Result<(), RemoteError> {
        let mut got = 0u64;
        let mut attempt = 0;
        loop {
            let before = got;
            match self.read_from(blob, &mut got, out) {
                // All of it came before the connection broke: the digest decides.
                Err(Broken::Yes(_)) if got >= blob.size => return Ok(()),
                Err(Broken::Yes(_)) if attempt < STREAM_RETRIES || got > before => {
                    attempt = if got > before { 1 } else { attempt + 1 };
                    Self::pause(attempt);
                }
                Err(Broken::Yes(s)) => {
                    return Err(from_status(&self.endpoint, "ByteStream.Read", s));
                }
                Err(Broken::No(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Reads `blob` from offset `got` on, counting in `got` what was written to `out`.
    fn read_from(&self, blob: Blob, got: &mut u64, out: &mut dyn Write) -> Result<(), Broken> {
        let request = bs::ReadRequest {
            resource_name: self.endpoint.resource(&format!("blobs/{blob}")),
            read_offset: *got as i64,
            read_limit: 0,
        };
        let mut client = ByteStreamClient::new(self.channel.clone());
        self.rt.block_on(async {
            let mut stream = client.read(request).await.map_err(|s| match s.code() {
                tonic::Code::NotFound => Broken::No(self.missing(blob)),
                _ => Broken::of(&self.endpoint, "ByteStream.Read", s),
            })?;
            while let Some(chunk) = stream
                .get_mut()
                .message()
                .await
                .map_err(|s| Broken::of(&self.endpoint, "ByteStream.Read", s))?
            {
                self.put(out, &chunk.data).map_err(Broken::No)?;
                *got += chunk.data.len() as u64;
                if *got > blob.size {
                    break;
                }
            }
            Ok(())
        })
    }

    /// The action cache's result for an action, if it has one.
    pub fn get_action_result(&self, action: Blob) -> Result<Option<re::ActionResult>, RemoteError> {
        let request = re::GetActionResultRequest {
            instance_name: self.endpoint.instance.clone(),
            action_digest: Some(action.to_proto()),
            ..Default::default()
        };
        let client = ActionCacheClient::new(self.channel.clone());
        let got = self.unary(request, |r| {
            let mut client = client.clone();
            async move { client.get_action_result(r).await }
        });
        match got {
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
        let client = ActionCacheClient::new(self.channel.clone());
        self.unary(request, |r| {
            let mut client = client.clone();
            async move { client.update_action_result(r).await }
        })
        .map_err(|s| from_status(&self.endpoint, "UpdateActionResult", s))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(size: usize) -> Vec<bs::WriteRequest> {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let all: Vec<_> =
            WriteChunks::new(std::io::Cursor::new(data), "r".into(), size as u64).collect();
        let joined: Vec<u8> = all.iter().flat_map(|w| w.data.clone()).collect();
        assert_eq!(joined.len(), size);
        all
    }

    #[test]
    fn an_upload_is_cut_into_chunks_named_once_and_finished_once() {
        let empty = chunks(0);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].finish_write && empty[0].resource_name == "r");
        for size in [1, CHUNK - 1, CHUNK, 2 * CHUNK + 5] {
            let all = chunks(size);
            assert_eq!(all.len(), size.div_ceil(CHUNK), "{size}");
            for (i, w) in all.iter().enumerate() {
                assert_eq!(w.write_offset, (i * CHUNK) as i64);
                assert_eq!(w.resource_name.is_empty(), i > 0);
                assert_eq!(w.finish_write, i == all.len() - 1);
            }
        }
    }

    #[test]
    fn a_reader_that_comes_short_ends_the_upload_unfinished() {
        // Two chunks' worth announced, one and a bit there.
        let data = vec![7u8; CHUNK + 10];
        let mut it = WriteChunks::new(std::io::Cursor::new(data), "r".into(), 2 * CHUNK as u64);
        let first = it.next().unwrap();
        assert!(!first.finish_write);
        assert!(it.next().is_none());
        assert!(it.failed.lock().unwrap().is_some());
    }
}
