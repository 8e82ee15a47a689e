"""Create the team bucket on the S3 endpoint of ``$AWS_ENDPOINT_URL`` if it is missing.

``python deploy/team/s3_bucket.py BUCKET``; exit 0 when the bucket exists (``make team-up`` polls
this until SeaweedFS answers), 1 while the endpoint does not answer.
"""

import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError


def main(bucket: str) -> int:
    s3 = boto3.client("s3")
    try:
        names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in names:
            s3.create_bucket(Bucket=bucket)
        s3.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as exc:
        print(f"s3: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
