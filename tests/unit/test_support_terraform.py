"""The deploy test's judge of the emulator's retried-create race: it must excuse that race and nothing else."""

from __future__ import annotations

from tests.support.terraform import retried_create_race, sdk_attempts

# what `cdktf deploy` printed when the race was lost (CI, stop 18)
FAILED_DEPLOY = """\
lepton-aws  Error: creating VPC Security Group Rule

              with aws_vpc_security_group_egress_rule.GpuNodes_SecurityGroupEgress_9EC3D488 (Default/GpuNodes/SecurityGroupEgress),
              on cdk.tf.json line 1176, in resource.aws_vpc_security_group_egress_rule.GpuNodes_SecurityGroupEgress_9EC3D488:
            1176:       },

            operation error EC2: AuthorizeSecurityGroupEgress, https response error
            StatusCode: 400, RequestID:
            ZSdebD3QXyi80ywDVsI8tzwLZMsiBybcb5nrSF4hkaNRZAUQPTLO, api error
            InvalidPermission.Duplicate: The specified rule already exists
"""


def _request(operation: str, attempt: int, second: int) -> str:
    """One ``HTTP Request Sent`` entry as Terraform's debug log writes it: fields spread over continuation lines."""
    return (f'2026-12-05T07:39:{second:02d}.163Z [DEBUG] provider.terraform-provider-aws_v5.100.0_x5: HTTP Request Sent: @module=aws '
            f'aws.region=us-east-1 http.request.header.amz_sdk_request="attempt={attempt}; max=3" rpc.service=EC2\n'
            f'  | Action={operation}&GroupId=sg-704929edd0c70d2e1&IpPermissions.1.FromPort=443&Version=2016-11-15\n'
            f'   rpc.method={operation} tf_resource_type=aws_vpc_security_group_egress_rule timestamp=2026-12-05T07:39:{second:02d}.163Z\n'
            f'2026-12-05T07:39:{second:02d}.172Z [DEBUG] provider.terraform-provider-aws_v5.100.0_x5: HTTP Response Received: '
            f'rpc.method={operation} http.status_code=200\n')


def test_a_duplicate_answered_to_the_sdks_retry_is_the_race(tmp_path):
    log = tmp_path / "tf.log"
    log.write_text(_request("AuthorizeSecurityGroupIngress", 1, 50) + _request("AuthorizeSecurityGroupEgress", 1, 58)
                   + _request("AuthorizeSecurityGroupEgress", 2, 59))
    assert sdk_attempts(log, "AuthorizeSecurityGroupEgress") == [1, 2]
    why = retried_create_race(FAILED_DEPLOY, log)
    assert why is not None and "AuthorizeSecurityGroupEgress" in why and "InvalidPermission.Duplicate" in why


def test_a_duplicate_on_the_first_attempt_is_a_real_failure(tmp_path):
    """The configuration itself creating a rule twice must still fail the test."""
    log = tmp_path / "tf.log"
    log.write_text(_request("AuthorizeSecurityGroupEgress", 1, 58) + _request("AuthorizeSecurityGroupEgress", 1, 59)
                   + _request("AuthorizeSecurityGroupIngress", 2, 59))
    assert retried_create_race(FAILED_DEPLOY, log) is None


def test_other_errors_and_a_missing_log_are_real_failures(tmp_path):
    log = tmp_path / "tf.log"
    log.write_text(_request("AuthorizeSecurityGroupEgress", 2, 58))
    assert retried_create_race(FAILED_DEPLOY.replace("InvalidPermission.Duplicate", "InvalidGroup.NotFound"), log) is None
    assert retried_create_race("Error: Invalid provider configuration", log) is None
    assert retried_create_race(FAILED_DEPLOY, tmp_path / "no-such.log") is None
