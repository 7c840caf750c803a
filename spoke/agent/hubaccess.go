package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// ReasonHubUnauthorized is the reason of the Warning event the agent
// records on its hub kubeconfig Secret when the hub rejects its token.
const ReasonHubUnauthorized = "HubUnauthorized"

// unauthorizedRepeat is how often the agent repeats its log line and event
// while the hub keeps rejecting it: often enough that the event does not
// expire (the events API keeps them about an hour).
const unauthorizedRepeat = 10 * time.Minute

// RecoveryCommand is what an operator runs to give an agent the hub
// rejects a new identity: join again, which issues a new token into the
// agent's Secret; the running agent reloads it, no restart needed.
func RecoveryCommand(clusterName, hubServer string) string {
	return fmt.Sprintf("jobset-fleet-agent join --hub-kubeconfig <hub admin kubeconfig> --member-kubeconfig <member admin kubeconfig> --cluster-name %s --hub-server %s", clusterName, hubServer)
}

// UnauthorizedMessage says why the hub rejects the agent and how to
// recover. expires is the rejected token's expiry, zero when unknown.
func UnauthorizedMessage(clusterName, hubServer string, expires, now time.Time) string {
	why := "the hub no longer accepts the agent's token (revoked, or its ServiceAccount was recreated)"
	if !expires.IsZero() && !now.Before(expires) {
		why = fmt.Sprintf("the agent's hub token expired at %s; only a running agent renews it, and this one was stopped or cut off longer than the token lives", expires.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("The hub rejects cluster %s's agent (401 Unauthorized): %s. Without a heartbeat its fleet JobSets are stopped (fenced) and stay so until it renews. To recover, run: %s",
		clusterName, why, RecoveryCommand(clusterName, hubServer))
}

// hubAccess watches the heartbeat's answers for the hub rejecting the
// agent's credentials, which no retry mends: it says so plainly (an error
// log line, a Warning event on the hub kubeconfig Secret, the metric
// jobset_fleet_agent_hub_unauthorized), with the command that recovers.
// Fencing is unaffected: no renewal, no fleet work.
type hubAccess struct {
	clusterName string
	hubServer   string
	credentials *HubCredentials // nil for a fixed config
	recorder    events.EventRecorder
	token       func() string

	mu           sync.Mutex
	unauthorized bool
	lastSaid     time.Time
}

func (h *hubAccess) isUnauthorized() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unauthorized
}

// observe takes the outcome of a heartbeat renewal.
func (h *hubAccess) observe(ctx context.Context, err error, now time.Time) {
	logger := log.FromContext(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !apierrors.IsUnauthorized(err) {
		if h.unauthorized && err == nil {
			logger.Info("The hub accepts the agent's credentials again")
			h.unauthorized = false
		}
		return
	}
	if h.unauthorized && now.Sub(h.lastSaid) < unauthorizedRepeat {
		return
	}
	h.unauthorized, h.lastSaid = true, now
	var expires time.Time
	if claims, err := parseClaims(h.token()); err == nil && claims.Exp != 0 {
		expires = time.Unix(claims.Exp, 0)
	}
	msg := UnauthorizedMessage(h.clusterName, h.hubServer, expires, now)
	logger.Error(err, msg, "recovery", RecoveryCommand(h.clusterName, h.hubServer))
	if h.credentials == nil || h.recorder == nil {
		return
	}
	secret, err := h.credentials.secretObject(ctx)
	if err != nil {
		logger.Error(err, "Recording the event about the rejected hub credentials")
		return
	}
	if secret != nil {
		h.recorder.Eventf(secret, nil, corev1.EventTypeWarning, ReasonHubUnauthorized, "RenewHeartbeat", "%s", fleet.Bounded(msg, fleet.MaxEventNote))
	}
}
