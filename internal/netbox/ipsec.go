package netbox

import (
	"strings"
)

// A strongSwan proposal ("aes256gcm16-prfsha384-ecp384") as NetBox's IKE
// and IPsec proposal objects hold it: one encryption algorithm, one
// authentication (integrity) algorithm and one DH group, from NetBox's
// choice lists (vpn/choices.py). NetBox has no value for ChaCha20-Poly1305,
// Curve448 pairs with other names, and so on: such a proposal is not
// expressible, and backbone then writes no proposal object (the policy's
// custom field bb_proposal always holds the exact strongSwan string).
type nbProposal struct {
	Encryption     string // aes-256-gcm ...
	Authentication string // hmac-sha384 ... ("" for AEAD ciphers)
	Group          int    // DH group number, 0: none
}

var nbCiphers = map[string]string{
	"aes128": "aes-128-cbc", "aes192": "aes-192-cbc", "aes256": "aes-256-cbc",
	"aes128gcm16": "aes-128-gcm", "aes192gcm16": "aes-192-gcm", "aes256gcm16": "aes-256-gcm",
	"aes128gcm": "aes-128-gcm", "aes192gcm": "aes-192-gcm", "aes256gcm": "aes-256-gcm",
	"3des": "3des-cbc", "des": "des-cbc",
}

var nbIntegrity = map[string]string{
	"sha1": "hmac-sha1", "sha": "hmac-sha1", "sha256": "hmac-sha256", "sha2_256": "hmac-sha256",
	"sha384": "hmac-sha384", "sha2_384": "hmac-sha384", "sha512": "hmac-sha512", "sha2_512": "hmac-sha512",
	"md5": "hmac-md5",
}

// nbGroups are strongSwan's DH group keywords and their IANA numbers.
var nbGroups = map[string]int{
	"modp768": 1, "modp1024": 2, "modp1536": 5, "modp2048": 14, "modp3072": 15, "modp4096": 16,
	"modp6144": 17, "modp8192": 18, "ecp256": 19, "ecp384": 20, "ecp521": 21, "modp1024s160": 22,
	"modp2048s224": 23, "modp2048s256": 24, "ecp192": 25, "ecp224": 26, "ecp224bp": 27,
	"ecp256bp": 28, "ecp384bp": 29, "ecp512bp": 30, "curve25519": 31, "x25519": 31,
	"curve448": 32, "x448": 32,
}

// nbProposals translates a strongSwan proposal list (proposals separated
// by commas) into NetBox proposals; ok is false when one of them has an
// algorithm NetBox cannot name. A strongSwan proposal that lists several
// algorithms of one type becomes the first of each.
func nbProposals(s string) (out []nbProposal, ok bool) {
	for _, prop := range strings.Split(s, ",") {
		var p nbProposal
		for _, tok := range strings.Split(strings.TrimSpace(prop), "-") {
			switch {
			case tok == "" || tok == "esn" || tok == "noesn" || strings.HasPrefix(tok, "prf"):
				// PRF and ESN: NetBox has no field for them.
			case nbCiphers[tok] != "":
				if p.Encryption == "" {
					p.Encryption = nbCiphers[tok]
				}
			case nbIntegrity[tok] != "":
				if p.Authentication == "" {
					p.Authentication = nbIntegrity[tok]
				}
			case nbGroups[tok] != 0:
				if p.Group == 0 {
					p.Group = nbGroups[tok]
				}
			default:
				return nil, false // chacha20poly1305, sha256_96, ntru...
			}
		}
		if p.Encryption == "" && p.Authentication == "" {
			return nil, false
		}
		out = append(out, p)
	}
	return out, len(out) > 0
}
