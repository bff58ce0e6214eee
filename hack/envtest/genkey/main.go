// genkey writes an RSA key pair for the test API server's service-account tokens when openssl
// is not installed: `go run hack/envtest/genkey/main.go PRIVATE.pem PUBLIC.pem` (stdlib only).
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: genkey PRIVATE.pem PUBLIC.pem")
		os.Exit(2)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	check(err)
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	check(err)
	check(os.WriteFile(os.Args[1], pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600))
	check(os.WriteFile(os.Args[2], pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "genkey:", err)
		os.Exit(1)
	}
}
