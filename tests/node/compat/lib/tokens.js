// Test helper: mint JWTs for the auth tests (valid HS256, expired, wrong
// secret, hand-crafted `alg: none`, RS256 for algorithm-confusion checks) and an
// in-memory authEngine for socketcluster-client with a preloaded token.
'use strict';

const crypto = require('crypto');
const jwt = require('jsonwebtoken');
const {DEFAULT_SECRET} = require('./server');

function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

/** Valid HS256 token for `sub` (1 hour unless claims.exp is given). */
function validToken(sub, claims = {}, secret = DEFAULT_SECRET) {
  const payload = {sub, ...claims};
  const opts = {algorithm: 'HS256'};
  if (payload.exp == null) opts.expiresIn = 3600;
  return jwt.sign(payload, secret, opts);
}

/** Correctly signed HS256 token that expired a minute ago. */
function expiredToken(sub, secret = DEFAULT_SECRET) {
  const now = nowSeconds();
  return jwt.sign({sub, iat: now - 120, exp: now - 60}, secret, {algorithm: 'HS256'});
}

/** HS256 token signed with the wrong secret. */
function wrongSecretToken(sub) {
  return validToken(sub, {}, 'definitely-not-the-server-secret');
}

function b64url(obj) {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

/** Unsigned token: header {"alg":"none","typ":"JWT"}, empty signature. */
function algNoneToken(sub) {
  const now = nowSeconds();
  return `${b64url({alg: 'none', typ: 'JWT'})}.${b64url({sub, iat: now, exp: now + 3600})}.`;
}

let rsaKeys = null;
/** RS256 token signed with a fresh RSA key (the server only knows an HMAC secret). */
function rs256Token(sub) {
  if (!rsaKeys) {
    rsaKeys = crypto.generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: {type: 'spki', format: 'pem'},
      privateKeyEncoding: {type: 'pkcs8', format: 'pem'},
    });
  }
  return jwt.sign({sub}, rsaKeys.privateKey, {algorithm: 'RS256', expiresIn: 3600});
}

/** Decode a JWT payload without verifying it. */
function decodePayload(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/**
 * In-memory authEngine for socketcluster-client (it reads its token from the
 * authEngine at connect). `store.token` is the current token.
 */
function memoryAuthEngine(token = null) {
  const store = {token, saved: [], removed: 0};
  return {
    store,
    saveToken(name, value) {
      store.token = value;
      store.saved.push(value);
      return Promise.resolve(value);
    },
    removeToken(name) {
      const old = store.token;
      store.token = null;
      store.removed += 1;
      return Promise.resolve(old);
    },
    loadToken(name) {
      return Promise.resolve(store.token);
    },
  };
}

module.exports = {
  validToken,
  expiredToken,
  wrongSecretToken,
  algNoneToken,
  rs256Token,
  decodePayload,
  memoryAuthEngine,
  nowSeconds,
};
