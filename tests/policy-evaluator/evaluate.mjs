// Test-only: evaluate an IAM identity policy for a list of requests with @cloud-copilot/iam-simulate,
// an independent IAM evaluator that, unlike moto, applies `Condition` blocks.
//
// stdin:  {"policy": {...}, "boundary": {...} (optional: a permissions boundary),
//          "requests": [{"action": "s3:ListBucket", "resource": "arn:...", "context": {"s3:prefix": "x/"}}]}
// stdout: ["Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied", ...] in request order.
// Exits 2 when the simulator rejects the input (an unknown action or context key, say).
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const { policy, boundary, requests } = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const verdicts = []
for (const request of requests) {
  const response = await runSimulation(
    {
      identityPolicies: [{ name: 'arq-lockdown', policy }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      permissionBoundaryPolicies: boundary ? [{ name: 'boundary', policy: boundary }] : undefined,
      request: {
        action: request.action,
        principal: 'arn:aws:iam::123456789012:user/arq-lockdown/arq-test',
        resource: { accountId: '123456789012', resource: request.resource },
        contextVariables: request.context ?? {}
      }
    },
    {}
  )
  if (response.resultType === 'error') {
    console.error(JSON.stringify({ request, errors: response.errors }))
    process.exit(2)
  }
  verdicts.push(response.overallResult)
}
console.log(JSON.stringify(verdicts))
