//! The allowed buckets as the binding rule reads them: an S3 client for each, in the bucket's own
//! region, and the one question asked of them — whether a computer UUID has data in any of them,
//! an object under `UUID/` or `glacier/UUID/` (Arq's S3 and S3-Glacier folders). One ListObjectsV2
//! with max-keys=1 per folder and bucket, all at once; a bucket that does not exist holds nothing,
//! and any other failure refuses the binding rather than guess.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::arq_config::{BucketName, ComputerUuid};
use crate::aws;

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error(
        "S3 refused s3:ListBucket on {bucket} to the service's credentials: allow it (arq-lockdown policy --kind service), or set bind_without_pin"
    )]
    Refused { bucket: String },
    #[error("S3 ListObjectsV2 on {bucket} failed: {message}")]
    Failed { bucket: String, message: String },
}

pub struct Buckets {
    clients: Vec<(BucketName, aws_sdk_s3::Client)>,
}

impl Buckets {
    /// A client for each of `buckets`, in its region.
    pub async fn connect(sdk_config: &aws_config::SdkConfig, buckets: &[BucketName]) -> Self {
        let mut clients = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            let client = aws::s3_for_bucket(sdk_config, bucket.as_str()).await;
            clients.push((bucket.clone(), client));
        }
        Self { clients }
    }

    /// Whether the service may list every bucket: asked once at start, so that a missing right
    /// stops the service with its name instead of refusing every new Mac.
    pub async fn check(&self) -> Result<(), BucketError> {
        self.any_objects(&[""]).await.map(drop)
    }

    /// Whether `uuid` has data in any of the buckets.
    pub async fn have_data(&self, uuid: &ComputerUuid) -> Result<bool, BucketError> {
        self.any_objects(&[&format!("{uuid}/"), &format!("glacier/{uuid}/")])
            .await
    }

    /// Whether any bucket holds an object under any of `prefixes`.
    async fn any_objects(&self, prefixes: &[&str]) -> Result<bool, BucketError> {
        let mut listings = tokio::task::JoinSet::new();
        for (bucket, s3) in &self.clients {
            for prefix in prefixes {
                let (s3, bucket, prefix) = (s3.clone(), bucket.to_string(), prefix.to_string());
                listings.spawn(async move { has_objects(&s3, &bucket, &prefix).await });
            }
        }
        let mut found = false;
        while let Some(listed) = listings.join_next().await {
            found |= listed.map_err(|e| BucketError::Failed {
                bucket: "(all)".into(),
                message: e.to_string(),
            })??;
        }
        Ok(found)
    }
}

async fn has_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<bool, BucketError> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .max_keys(1)
        .send()
        .await;
    let error = match listed {
        Ok(page) => return Ok(page.key_count().unwrap_or(0) > 0 || !page.contents().is_empty()),
        Err(error) => error,
    };
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (error.code(), status) {
        (Some("NoSuchBucket"), _) => Ok(false),
        (Some("AccessDenied"), _) | (None, Some(403)) => Err(BucketError::Refused {
            bucket: bucket.to_owned(),
        }),
        _ => Err(BucketError::Failed {
            bucket: bucket.to_owned(),
            message: crate::one_line(&DisplayErrorContext(&error).to_string()),
        }),
    }
}
