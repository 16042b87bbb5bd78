//! The S3 calls `verify` makes with one key, in the shapes Arq makes them, and the calls a
//! locked-down key must not be able to make: [`Prober`] sends each and hands S3's answer to
//! [`judge`](super::judge), which decides what it means.
//!
//! Owns the list of probes, their names and resources, and which of them wait for each other.
//! The Arq calls follow Haystack's published S3 code (arqbackup/arq_restore, Arq 5 at d4a3d0e;
//! docs/policy.md's policy table cites file and line for each): classic ListObjects with
//! `max-keys=500`, the bucket root listed with `delimiter=/` to find computers, `U/objects/00`
//! listed without a delimiter, GET with a Range, HEAD, single-request PUT, one DELETE per key.
//!
//! The probes run side by side, beside the first round trip (the bucket list and its region) in
//! the client's own region, and from round trip 2 in the bucket's when that differs (under other
//! probe names; the first run's answers set aside): every probe is independent,
//! but for one probe object's put → (head ‖ get) → delete chain and the other computer's probes,
//! which wait for the root listing that names it (then put → delete). That is 3 round trips on the
//! critical path when the bucket is in the client's region (4 when not), whatever the number of
//! probes.
//!
//! It writes only uniquely named probe objects (`arq-lockdown-probe-<uuid>`) and deletes them
//! again; with `read_only` it writes nothing. It never prints object contents or secrets.

use aws_config::Region;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::judge::{answer, check};
use super::{Answer, Check, CheckKind, VerifyError, VerifyOptions};
use crate::arq_config::ComputerUuid;
use crate::aws;

/// Every Arq computer folder holds this object; the read probe asks for another computer's copy.
const COMPUTER_INFO: &str = "computerinfo";

/// Arq lists at most this many keys a page (S3Lister.m).
const PAGE: i32 = 500;

/// The other computer to probe: the one named, else one the root listing showed — only then is
/// its data known to exist, which the read probe needs — else a made-up one.
fn other_computer(
    options: &VerifyOptions,
    found: Vec<ComputerUuid>,
    own: &str,
) -> (ComputerUuid, bool) {
    let seen = found.into_iter().find(|uuid| uuid.as_str() != own);
    match (&options.other_computer, seen) {
        (Some(named), _) => (named.clone(), true),
        (None, Some(seen)) => (seen, true),
        (None, None) => (
            ComputerUuid::parse(&uuid::Uuid::new_v4().to_string().to_uppercase())
                .expect("a v4 UUID is canonical"),
            false,
        ),
    }
}

/// Checks from several calls, and the probe objects left behind by them.
type Checks = (Vec<Check>, Vec<String>);

/// What one run of every probe found (all but the bucket list and its location), the other
/// computer it was aimed at and the name of its probe objects.
pub(super) struct Probes {
    pub(super) checks: Vec<Check>,
    /// Probe objects written but not deleted again.
    pub(super) left_behind: Vec<String>,
    pub(super) other: ComputerUuid,
    pub(super) probe_object_name: String,
}

/// Makes the calls; each returns its [`Check`].
pub(super) struct Prober {
    client: Client,
    bucket: String,
    probe_name: String,
}

impl Prober {
    pub(super) fn new(client: Client, bucket: &str, probe_name: String) -> Self {
        Self {
            client,
            bucket: bucket.to_owned(),
            probe_name,
        }
    }

    fn bucket_arn(&self) -> String {
        format!("arn:aws:s3:::{}", self.bucket)
    }

    fn object_arn(&self, key: &str) -> String {
        format!("arn:aws:s3:::{}/{key}", self.bucket)
    }

    pub(super) async fn list_buckets(&self) -> Result<Check, VerifyError> {
        let result = self.client.list_buckets().send().await;
        let listed = result.as_ref().ok().map(|out| {
            out.buckets()
                .iter()
                .any(|b| b.name() == Some(self.bucket.as_str()))
        });
        let got = answer(result)?;
        let mut check = check(
            "ListBuckets".into(),
            CheckKind::ArqCall,
            "s3:ListAllMyBuckets",
            "*".into(),
            got,
        );
        if listed == Some(false) {
            check.passed = false;
            check.detail = Some(format!(
                "bucket {} is not among this account's buckets: is the name exact (dot included)?",
                self.bucket
            ));
        }
        Ok(check)
    }

    /// GetBucketLocation, and the bucket's region when S3 named one other than the client's own
    /// (`None` also when the call failed: the probes then run in the client's region, as before
    /// the location was asked).
    pub(super) async fn bucket_location(&self) -> Result<(Check, Option<Region>), VerifyError> {
        let result = self
            .client
            .get_bucket_location()
            .bucket(&self.bucket)
            .send()
            .await;
        let current = self.client.config().region();
        let other_region = result
            .as_ref()
            .ok()
            .and_then(|out| aws::bucket_region_elsewhere(current, out));
        let got = answer(result)?;
        let check = check(
            "GetBucketLocation".into(),
            CheckKind::ArqCall,
            "s3:GetBucketLocation",
            self.bucket_arn(),
            got,
        );
        Ok((check, other_region))
    }

    /// Every probe at once, in this client's region: the computer listings (the other
    /// computer's probes start as soon as the root listing names one), this computer's own
    /// folders, and the object names across all computers (only folder names may be listed).
    pub(super) async fn probe(
        &self,
        own: &str,
        options: &VerifyOptions,
    ) -> Result<Probes, VerifyError> {
        let computers_and_other = async {
            let kind = match options.no_computer_listing {
                false => CheckKind::ArqCall,
                true => CheckKind::ListingIsolation,
            };
            let ((root, found), (glacier, _)) = tokio::try_join!(
                self.list(kind, "", Some("/")),
                self.list(kind, "glacier/", Some("/")),
            )?;
            let (other, known_to_exist) = other_computer(options, found, own);
            let other_checks = self
                .other_computer(&other, known_to_exist, options.read_only)
                .await?;
            Ok::<_, VerifyError>((vec![root, glacier], other, other_checks))
        };
        let all_names = self.list(CheckKind::ListingIsolation, "", None);
        let ((computer_checks, other, other_checks), own_checks, glacier_checks, (all_names, _)) =
            tokio::try_join!(
                computers_and_other,
                self.own_folder(own, options.read_only),
                self.own_glacier(own, options.read_only),
                all_names,
            )?;
        let mut checks = computer_checks;
        checks.extend(own_checks.0);
        checks.extend(glacier_checks.0);
        checks.push(all_names);
        checks.extend(other_checks.0);
        Ok(Probes {
            checks,
            left_behind: [own_checks.1, glacier_checks.1, other_checks.1].concat(),
            other,
            probe_object_name: self.probe_name.clone(),
        })
    }

    /// Classic ListObjects (v1) as Arq lists: `prefix` always sent, `max-keys=500`, with or
    /// without a delimiter. Returns the check and the computer UUIDs among the folders listed.
    async fn list(
        &self,
        kind: CheckKind,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Check, Vec<ComputerUuid>), VerifyError> {
        let (check, page) = self.list_page(kind, prefix, delimiter, None).await?;
        let found = page
            .map(|(folders, _)| {
                folders
                    .iter()
                    .filter_map(|f| f.strip_suffix('/')?.rsplit('/').next())
                    .filter_map(|name| ComputerUuid::parse(name).ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok((check, found))
    }

    /// One page: the check, and when allowed the folders listed and the marker for the next
    /// page (the last key, as Arq takes it) if there is one.
    async fn list_page(
        &self,
        kind: CheckKind,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<&str>,
    ) -> Result<(Check, Option<(Vec<String>, Option<String>)>), VerifyError> {
        let result = self
            .client
            .list_objects()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_marker(marker.map(str::to_owned))
            .max_keys(PAGE)
            .send()
            .await;
        let page = result.as_ref().ok().map(|out| {
            let folders = out
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned))
                .collect();
            let next = out
                .is_truncated()
                .unwrap_or(false)
                .then(|| {
                    out.contents()
                        .last()
                        .and_then(|o| o.key().map(str::to_owned))
                })
                .flatten();
            (folders, next)
        });
        let got = answer(result)?;
        let mut call = format!("ListObjects prefix={prefix:?}");
        if let Some(delimiter) = delimiter {
            call += &format!(" delimiter={delimiter:?}");
        }
        if marker.is_some() {
            call += " marker=<last key>";
        }
        let check = check(call, kind, "s3:ListBucket", self.bucket_arn(), got);
        Ok((check, page))
    }

    /// This computer's folder as Arq uses it: listed (and its next page, when there is one), its
    /// objects listed by their first hex byte without a delimiter, and a probe object's round
    /// trip.
    async fn own_folder(&self, own: &str, read_only: bool) -> Result<Checks, VerifyError> {
        let folder = format!("{own}/");
        let listing = async {
            let (first, page) = self
                .list_page(CheckKind::ArqCall, &folder, Some("/"), None)
                .await?;
            let mut checks = vec![first];
            if let Some((_, Some(marker))) = page {
                let (next, _) = self
                    .list_page(CheckKind::ArqCall, &folder, Some("/"), Some(&marker))
                    .await?;
                checks.push(next);
            }
            Ok::<_, VerifyError>(checks)
        };
        let first_objects = format!("{own}/objects/00");
        let objects = self.list(CheckKind::ArqCall, &first_objects, None);
        let round_trip = self.round_trip(&folder, CheckKind::ArqCall, read_only);
        let (mut checks, (objects, _), (trip, left)) =
            tokio::try_join!(listing, objects, round_trip)?;
        checks.push(objects);
        checks.extend(trip);
        Ok((checks, left))
    }

    /// This computer's S3-Glacier folder: listed, and a probe object's round trip.
    async fn own_glacier(&self, own: &str, read_only: bool) -> Result<Checks, VerifyError> {
        let folder = format!("glacier/{own}/");
        let listing = self.list(CheckKind::ArqCall, &folder, Some("/"));
        let round_trip = self.round_trip(&folder, CheckKind::ArqCall, read_only);
        let ((listed, _), (trip, left)) = tokio::try_join!(listing, round_trip)?;
        Ok(([vec![listed], trip].concat(), left))
    }

    /// Another computer's folders listed, its data read, a probe object written and deleted in
    /// both its folders: all must be refused.
    async fn other_computer(
        &self,
        other: &ComputerUuid,
        known_to_exist: bool,
        read_only: bool,
    ) -> Result<Checks, VerifyError> {
        let folder = format!("{other}/");
        let glacier = format!("glacier/{other}/");
        let info = format!("{other}/{COMPUTER_INFO}");
        let kind = CheckKind::DataIsolation;
        let (listed, listed_glacier, read, written, written_glacier) = tokio::try_join!(
            self.list(CheckKind::ListingIsolation, &folder, Some("/")),
            self.list(CheckKind::ListingIsolation, &glacier, Some("/")),
            self.read_other(&info, known_to_exist),
            self.round_trip(&folder, kind, read_only),
            self.round_trip(&glacier, kind, read_only),
        )?;
        let mut checks = vec![listed.0, listed_glacier.0];
        checks.extend(read);
        checks.extend(written.0);
        checks.extend(written_glacier.0);
        Ok((checks, [written.1, written_glacier.1].concat()))
    }

    /// GET (with a Range, as Arq reads packs) and HEAD of another computer's object. Without a
    /// right to list its folder S3 answers 403 for a key that does not exist, so a refusal proves
    /// something only for an object known to exist: otherwise the read is reported as not probed.
    async fn read_other(&self, key: &str, known_to_exist: bool) -> Result<Vec<Check>, VerifyError> {
        let arn = self.object_arn(key);
        if !known_to_exist {
            let reason = "no other computer has data in this bucket (or the root listing is refused): a refused read of an object that may not exist proves nothing";
            return Ok(vec![check(
                format!("GetObject {key}"),
                CheckKind::DataIsolation,
                "s3:GetObject",
                arn,
                Answer::NotProbed(reason.to_owned()),
            )]);
        }
        let (get, head) = tokio::try_join!(self.get(key, Some("bytes=0-9")), self.head(key))?;
        let kind = CheckKind::DataIsolation;
        Ok(vec![
            check(
                format!("GetObject {key} range=0-9"),
                kind,
                "s3:GetObject",
                arn.clone(),
                get,
            ),
            check(format!("HeadObject {key}"), kind, "s3:GetObject", arn, head),
        ])
    }

    /// Put, then head and get (with a Range) and delete of a probe object in `folder` — the one
    /// chain of calls that must wait for each other. For another computer's folder (`kind` data
    /// isolation) only the put and the delete, which must both be refused.
    async fn round_trip(
        &self,
        folder: &str,
        kind: CheckKind,
        read_only: bool,
    ) -> Result<Checks, VerifyError> {
        if read_only {
            return Ok((Vec::new(), Vec::new()));
        }
        let key = format!("{folder}{}", self.probe_name);
        let arn = self.object_arn(&key);
        let shown = format!("{folder}<probe>");
        let put = self.put(&key).await?;
        let written = matches!(put, Answer::Allowed);
        let mut checks = vec![check(
            format!("PutObject {shown}"),
            kind,
            "s3:PutObject",
            arn.clone(),
            put,
        )];
        if kind == CheckKind::ArqCall {
            // Both only read the probe: side by side.
            let (head, get) = tokio::try_join!(self.head(&key), self.get(&key, Some("bytes=0-9")))?;
            checks.push(check(
                format!("HeadObject {shown}"),
                kind,
                "s3:GetObject",
                arn.clone(),
                head,
            ));
            checks.push(check(
                format!("GetObject {shown} range=0-9"),
                kind,
                "s3:GetObject",
                arn.clone(),
                get,
            ));
        }
        let delete = self.delete(&key).await?;
        let deleted = matches!(delete, Answer::Allowed | Answer::NotFound(_));
        checks.push(check(
            format!("DeleteObject {shown}"),
            kind,
            "s3:DeleteObject",
            arn,
            delete,
        ));
        let left = match written && !deleted {
            true => vec![key],
            false => Vec::new(),
        };
        Ok((checks, left))
    }

    async fn put(&self, key: &str) -> Result<Answer, VerifyError> {
        let body = ByteStream::from_static(b"arq-lockdown verify probe; safe to delete\n");
        answer(
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body)
                .send()
                .await,
        )
    }

    async fn head(&self, key: &str) -> Result<Answer, VerifyError> {
        answer(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await,
        )
    }

    /// GetObject, reading and discarding the body so the whole call is exercised.
    async fn get(&self, key: &str, range: Option<&str>) -> Result<Answer, VerifyError> {
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(str::to_owned))
            .send()
            .await;
        match sent {
            Ok(output) => Ok(match output.body.collect().await {
                Ok(_) => Answer::Allowed,
                Err(e) => Answer::Failed(format!("reading the body: {e}")),
            }),
            Err(e) => answer::<(), _>(Err(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<Answer, VerifyError> {
        answer(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(text: &str) -> ComputerUuid {
        ComputerUuid::parse(text).unwrap()
    }

    #[test]
    fn another_computers_data_is_read_only_when_it_is_known_to_exist() {
        let own = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570";
        let other = uuid("7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C");
        let options = VerifyOptions::default();
        assert_eq!(
            other_computer(&options, vec![uuid(own), other.clone()], own),
            (other.clone(), true),
            "one the root listing named"
        );
        let (made_up, known) = other_computer(&options, vec![uuid(own)], own);
        assert!(
            !known && made_up.as_str() != own,
            "nobody else: a made-up computer"
        );
        let named = VerifyOptions {
            other_computer: Some(other.clone()),
            ..VerifyOptions::default()
        };
        assert_eq!(other_computer(&named, Vec::new(), own), (other, true));
    }
}
