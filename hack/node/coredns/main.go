// CoreDNS with only the plugins the test node's cluster DNS uses (hack/node/manifests/coredns.yaml):
// cluster.local names from the Kubernetes API, health and readiness endpoints, a cache, error
// logging and loop detection. There is no forward plugin: a name outside cluster.local gets
// SERVFAIL/NXDOMAIN instead of a query leaving the machine. Built by hack/node/components.sh.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	// The order in which a query passes the plugins (the same relative order as CoreDNS's own
	// plugin.cfg).
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes", "loop"}
	coremain.Run()
}
